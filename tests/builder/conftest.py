"""Fixtures of the build tests: a module's store with the busybox base, checked after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pybuild.layout import Layout, check_layout
from tests.fixtures.cli import Pybuild, base_store


@pytest.fixture(scope="module")
def pb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pybuild]:
    """A store for the module's builds, holding the busybox base as busybox."""
    tool = base_store(tmp_path_factory.mktemp("build"), ("busybox",))
    yield tool
    tool.check()  # `pybuild check` of the whole store, once every test of the module has built


@pytest.fixture
def store_checked(pb: Pybuild) -> Iterator[None]:
    """After each test, the store passes pybuild's check (in-process: the CLI runs at teardown)."""
    yield
    assert check_layout(Layout.open(pb.store)) == []
