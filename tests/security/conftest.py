"""Fixtures of the adversarial suite: a private job root and cache for every test, a cwd
inside the test's own folder, and a private temp dir so that nothing a loader writes can
land outside ``tmp_path`` unnoticed."""

from __future__ import annotations

import os
import tempfile

import pytest


@pytest.fixture(autouse=True)
def _private_job_root(job_root):
    """Every test here gets its own job root (tests/conftest.py)."""
    return job_root


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Temp files of this process go three levels below ``tmp_path``: a name such as
    ``../../x/victim`` joined to a temp folder still lands inside ``tmp_path``, where the
    test can see it."""
    deep = tmp_path / "t1" / "t2" / "t3"
    deep.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(deep))
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    return deep


@pytest.fixture
def marker(tmp_path):
    """A path that a planted ``__reduce__`` or command would create; it must never appear."""
    path = tmp_path / "PWNED"
    yield path
    assert not os.path.lexists(path), f"planted code ran: {path} exists"
