"""The stack's PostgreSQL runs as the postgres account from the state folder: a folder above it that
the account may not enter is named before initdb, never a bare "Permission denied"."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from voxpulse_console.stack._catalogue import StackError
from voxpulse_console.stack._services import _pg_prepare, closed_to


@pytest.fixture
def locked(tmp_path: Path) -> Path:
    """A folder only its owner (root here) may enter, with a state folder below it."""
    folder = tmp_path / "locked"
    (folder / "state").mkdir(parents=True)
    folder.chmod(0o700)
    return folder


def test_the_first_folder_closed_to_the_account_is_named(locked: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the folder must belong to another account than postgres: run as root (CI does)")
    assert closed_to(locked / "state", "postgres") in {locked, *locked.parents}
    locked.chmod(0o711)
    closed = closed_to(locked / "state", "postgres")
    assert closed != locked  # let through now (a folder above may still be closed: pytest's own is 0700)


def test_a_system_folder_is_open_to_postgres() -> None:
    assert closed_to(Path("/usr/lib"), "postgres") is None
    assert closed_to(Path("/usr/lib"), "no-such-account-here") is None


def test_postgres_set_up_names_the_folder_it_cannot_enter(locked: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("PostgreSQL runs as its own account only when the stack runs as root (CI does)")
    with pytest.raises(StackError, match=r"may not enter .*chmod o\+x") as err:
        _pg_prepare(locked / "state")
    assert str(closed_to(locked / "state", "postgres")) in str(err.value)
    assert not (locked / "state" / "postgres").exists(), "nothing created before the check"
