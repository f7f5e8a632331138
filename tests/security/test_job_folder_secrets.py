"""Secrets stay out of the store: the values of ``environment_variables`` reach the job
through its process environment only; the job folder records their names.

The attacker can read the job root (it is shared storage) but nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from remote_runtime import RemoteExecutor, remote


def token_digest(fail=False):
    """What the job sees of the secret, without returning (so storing) the secret."""
    import hashlib
    import os

    value = os.environ.get("API_TOKEN")
    if fail:
        raise RuntimeError("failing on purpose")
    return hashlib.sha256(value.encode()).hexdigest() if value else None


def files_containing(folder, needle):
    hits = []
    for d, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(d, f)
            try:
                with open(path, "rb") as fh:
                    if needle in fh.read():
                        hits.append(path)
            except OSError:
                pass
    return hits


@pytest.mark.parametrize("keep_alive", [0, 30], ids=["fresh-process", "warm-worker"])
def test_environment_values_never_reach_the_job_folder(job_root, tmp_path, keep_alive):
    import hashlib

    secret = f"tok-{uuid.uuid4().hex}"
    with RemoteExecutor(
        stream_logs=False,
        keep_alive_period_in_seconds=keep_alive,
        environment_variables={"API_TOKEN": secret, "REGION": "eu-west-1"},
    ) as ex:
        ok = ex.submit(token_digest)
        bad = ex.submit(token_digest, True)
        assert ok.result() == hashlib.sha256(secret.encode()).hexdigest()  # the job sees it
        assert isinstance(bad.exception(), RuntimeError)
    for future in (ok, bad):
        spec = json.loads((job_root / future.job_name / "job.json").read_text())
        assert spec["settings"]["environment_variables"] == ["API_TOKEN", "REGION"]
        show = subprocess.run(
            [sys.executable, "-m", "remote_runtime", "jobs", "show", future.job_name],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert show.returncode == 0 and "API_TOKEN" in show.stdout
        assert secret not in show.stdout + show.stderr
        assert secret not in json.dumps(future.describe())
    assert files_containing(job_root, secret.encode()) == []
    assert files_containing(tmp_path / "cache", secret.encode()) == []


def test_environment_values_through_the_decorator(job_root):
    import hashlib

    secret = f"tok-{uuid.uuid4().hex}"
    fn = remote(environment_variables={"API_TOKEN": secret}, stream_logs=False)(token_digest)
    assert fn() == hashlib.sha256(secret.encode()).hexdigest()
    assert files_containing(job_root, secret.encode()) == []
