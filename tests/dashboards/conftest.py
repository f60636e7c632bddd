"""Fixtures for the dashboard and alert-rule tests: the generator and the query reader of grafana/
(scripts, not packages: loaded by path). The throw-away database is ``migrated_db`` (tests/conftest.py),
the stack's tools come from ``tests.support.binary``.
"""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.support import load_script


@pytest.fixture(scope="session")
def builder() -> ModuleType:
    return load_script("grafana/build_dashboards.py")


@pytest.fixture(scope="session")
def queries() -> ModuleType:
    return load_script("grafana/queries.py")
