"""Fixtures of the fault suite: an S3 server of the test's own (so stopping, pausing or
killing it touches no other test) and slow TCP proxies."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from servers import S3Server, SlowProxy


@pytest.fixture
def own_s3(tmp_path, monkeypatch):
    """A fresh S3 server for this test, the job root on it (``s3://jobs/<prefix>``)."""
    import s3fs

    server = S3Server(tmp_path / "s3data").start()
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    prefix = f"f-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REMOTE_RUNTIME_S3_ROOT_URI", f"s3://{server.bucket}/{prefix}")
    monkeypatch.setenv("REMOTE_RUNTIME_STREAM_LOGS", "false")
    s3fs.S3FileSystem.clear_instance_cache()  # a cached filesystem knows another endpoint
    server.root = server.data / server.bucket / prefix  # type: ignore[attr-defined]
    yield server
    if server.proc is not None and server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGCONT)
    server.stop()
    s3fs.S3FileSystem.clear_instance_cache()  # later tests must not reach this dead server


@pytest.fixture
def slow_proxy():
    made: list[SlowProxy] = []

    def make(target_port: int, delay: float) -> SlowProxy:
        made.append(SlowProxy(target_port, delay))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()
