from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import RayHead, S3Server  # noqa: E402


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
    """A Ray head on 127.0.0.1 for the whole session, stopped by PID."""
    pytest.importorskip("ray")
    head = RayHead().start(env=s3_server.env)
    yield head
    head.stop()
