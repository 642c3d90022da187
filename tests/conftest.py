"""Shared fixtures: a real Azurite for the session (Table, Queue, Blob on free loopback ports)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.azurite import Azurite, running_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One in-memory Azurite for the whole session; stopped at the end. Tests isolate themselves by
    using unique table/queue names (see ``unique_name``)."""
    with running_azurite() as server:
        yield server


@pytest.fixture
def storage_connection_string(azurite: Azurite) -> str:
    return azurite.connection_string


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A Table/Queue-safe name unique to the test (letters and digits, starts with a letter)."""
    import hashlib

    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
    return f"t{digest}"
