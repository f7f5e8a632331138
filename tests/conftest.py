from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import RayHead, S3Server


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
