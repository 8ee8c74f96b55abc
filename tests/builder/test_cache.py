"""The build cache (build/cache.py): step keys, and records kept in the store's private area."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybuild.builder.cache import BuildCache, step_key
from pybuild.layout import Layout
from tests.fixtures.tools import validate_layout


def test_step_key_is_stable_and_order_sensitive() -> None:
    key = step_key("parent", {"b": 1, "a": [1, 2]}, "RUN x")
    assert key == step_key("parent", {"a": [1, 2], "b": 1}, "RUN x")  # dict order does not matter
    assert key != step_key({"b": 1, "a": [1, 2]}, "parent", "RUN x")  # the order of parts does
    assert len(key) == 64 and all(c in "0123456789abcdef" for c in key)


def test_records_live_in_the_private_area(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path / "l")
    cache = BuildCache(layout)
    assert cache.root == layout.private.build_cache == tmp_path / "l" / ".pybuild" / "build-cache"
    key = step_key("a step")
    assert cache.get(key) is None
    record = {"history": {"created_by": "RUN x"}, "layer": None}
    cache.put(key, record)
    assert cache.get(key) == record
    assert sorted(p.name for p in cache.root.iterdir()) == [key]  # no temp file left
    validate_layout(tmp_path / "l")  # records live beside the layout's files, never among them


def test_unusable_records_are_misses(tmp_path: Path) -> None:
    cache = BuildCache(Layout.create(tmp_path / "l"))
    cache.root.mkdir(parents=True)
    for i, text in enumerate(["{not json", "[1, 2]", '{"history": "not an object"}']):
        key = step_key(i)
        (cache.root / key).write_text(text)
        assert cache.get(key) is None
    for bad in ("", "A" * 64, "../" + "a" * 61, "a" * 63):
        with pytest.raises(ValueError, match="bad cache key"):
            cache.put(bad, {"history": {}})
