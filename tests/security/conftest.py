"""Fixtures of the adversarial suite: a private job root and cache for every test, a cwd
inside the test's own folder, and a private temp dir so that nothing a loader writes can
land outside ``tmp_path`` unnoticed."""

from __future__ import annotations

import os
import tempfile

import pytest


@pytest.fixture(autouse=True)
def job_root(tmp_path, monkeypatch):
    """Every test gets its own job root and cache (keys, scratch folders, venvs)."""
    root = tmp_path / "jobs"
    monkeypatch.setenv("REMOTE_RUNTIME_S3_ROOT_URI", str(root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in list(os.environ):
        if name.startswith("REMOTE_RUNTIME_") and name != "REMOTE_RUNTIME_S3_ROOT_URI":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return root


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
