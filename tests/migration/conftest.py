"""Fixtures for the migration scenarios (the harness is in ``harness.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contrib.testserver import Cluster, open_cluster

from .harness import three_instances


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with open_cluster(three_instances()) as running:
        yield running
