from __future__ import annotations

from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
CORPORA = PROJECT.parent / "shared" / "corpora"


@pytest.fixture(scope="session")
def corpora() -> Path:
    """../shared/corpora, the read-only test data from other projects."""
    if not CORPORA.is_dir():
        pytest.fail(f"{CORPORA} is missing: the tests expect shared/ beside the project")
    return CORPORA
