from __future__ import annotations

import os

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


def job_folders(root):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []
