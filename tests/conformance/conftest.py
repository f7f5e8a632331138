"""Peers' own test suites, ported: CPython's concurrent.futures tests and the behaviour
SageMaker's remote-function integration tests assert, run against this project."""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _private_job_root(job_root):
    """Every test here gets its own job root (tests/conftest.py)."""
    return job_root


@pytest.fixture(params=["thread", "remote"])
def kind(request):
    """The executor under test: ThreadPoolExecutor (the control) or RemoteExecutor."""
    return request.param


@pytest.fixture
def make_executor(kind):
    """make_executor(max_workers) -> an executor of the kind under test; warm workers
    keep the remote one fast. Every executor made is shut down after the test."""
    from remote_runtime import RemoteExecutor

    made = []

    def make(max_workers=2):
        if kind == "thread":
            ex = ThreadPoolExecutor(max_workers)
        else:
            ex = RemoteExecutor(max_workers, keep_alive_period_in_seconds=30, stream_logs=False)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        if kind == "remote":  # stop what still runs (a thread cannot be stopped: it is waited for)
            for future in list(ex._state.running):
                future.cancel()
        ex.shutdown(wait=True, cancel_futures=True)
