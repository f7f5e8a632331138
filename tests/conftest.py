from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import RayHead, S3Server


@pytest.fixture
def job_root(tmp_path, monkeypatch):
    """A private job root, cache and config folder, with tmp_path as the working folder
    and no REMOTE_RUNTIME_* setting from the caller's environment (the runtime, security
    and conformance suites use it for every test)."""
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
def bundle_dir(tmp_path):
    return tmp_path / "bundle"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server on 127.0.0.1 for the whole session (rclone serve s3)."""
    server = S3Server(tmp_path_factory.mktemp("s3data")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ray_head(s3_server):
    """A Ray head on 127.0.0.1 for the whole session (token authentication on), stopped by
    PID. Ray reads its authentication settings when it is imported, so this process gets
    them before anything imports ray."""
    head = RayHead()
    saved = {k: os.environ.get(k) for k in head.env}
    os.environ.update(head.env)
    pytest.importorskip("ray")
    head.start(env=s3_server.env)
    yield head
    head.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
