"""The function bundle is content-addressed: written unsigned, the same bytes for every
job of one function (hard-linked between jobs of one client on a local root), verified by
the digest that the job's signed execution record carries. An attacker who can write the
job root can change the bytes, or put another function in their place: the job refuses
both, runs nothing, and the client's next job does not reuse the changed file."""

from __future__ import annotations

import os

import pytest

import remote_codecs as rc
from remote_runtime import RemoteExecutor, remote
from remote_runtime.client import Job, prepare_job
from remote_runtime.job import FUNCTION_PURPOSE
from remote_runtime.settings import resolve_settings

pytestmark = pytest.mark.timeout(120)


def add(x, y):
    return x + y


def _job(fn, *args):
    settings = resolve_settings({"stream_logs": False})
    paths, key = prepare_job(fn, args, {}, settings)
    return Job(paths, key, settings)


def test_jobs_of_one_function_share_its_bundle_and_each_verifies_it(job_root):
    with RemoteExecutor(keep_alive_period_in_seconds=30, stream_logs=False) as ex:
        futures = [ex.submit(add, i, 1) for i in range(3)]
        assert [f.result() for f in futures] == [1, 2, 3]
    files = [job_root / f.job_name / "function.bundle" for f in futures]
    assert len({p.stat().st_ino for p in files}) == 1 and files[0].stat().st_nlink == 3
    manifest = rc.inspect(files[0].read_bytes())
    assert "signature" not in manifest.raw and manifest.raw["purpose"] == FUNCTION_PURPOSE


def test_another_function_in_place_of_the_jobs_is_refused(job_root, marker):
    job = _job(add, 1, 2)

    def planted(x, y):
        marker.touch()
        return x * y

    path = job_root / job.name / "function.bundle"
    path.unlink()  # (a hard link: other jobs keep theirs)
    path.write_bytes(rc.dumps(planted, purpose=FUNCTION_PURPOSE))  # valid, unsigned
    job.launch()
    with pytest.raises(rc.IntegrityError, match="function.bundle does not match the digest"):
        job.result()
    assert job.status()["exit_code"] == 4


def test_a_missing_function_bundle_is_refused(job_root):
    job = _job(add, 1, 2)
    (job_root / job.name / "function.bundle").unlink()
    rc.save(add, job_root / job.name / "function")  # a folder form does not stand in
    job.launch()
    with pytest.raises(rc.IntegrityError, match="function.bundle is missing"):
        job.result()


def test_a_function_bundle_changed_in_place_is_not_linked_again(job_root):
    f = remote(add, stream_logs=False)
    assert f(1, 2) == 3
    (first,) = job_root.iterdir()
    path = first / "function.bundle"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    with open(path, "r+b") as fh:  # in place: the same inode, a new modification time
        fh.write(bytes(data))
        os.utime(path, ns=(1, 1))
    assert f(2, 3) == 5  # a fresh file, not a link to the changed one
    (second,) = set(job_root.iterdir()) - {first}
    assert (second / "function.bundle").stat().st_nlink == 1
    assert (second / "function.bundle").stat().st_ino != path.stat().st_ino


def test_jobs_of_one_function_submitted_at_different_times_share_its_bundle(job_root, monkeypatch):
    import time

    first = _job(add, 1, 2)
    later = time.time() + 3600  # (a zip entry records its date: it must not be the clock's)
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(time, "localtime", lambda *a: time.gmtime(later))
    second = _job(add, 3, 4)
    paths = [job_root / j.name / "function.bundle" for j in (first, second)]
    assert paths[0].stat().st_ino == paths[1].stat().st_ino
    monkeypatch.undo()
    second.launch()
    assert second.result() == 7


def _warm_job(fn, *args):
    settings = resolve_settings({"stream_logs": False, "keep_alive_period_in_seconds": 30})
    paths, key = prepare_job(fn, args, {}, settings)
    return Job(paths, key, settings)


@pytest.mark.parametrize("attack", ["replaced", "missing"])
def test_a_warm_worker_that_decoded_the_function_still_checks_each_jobs_bundle(
    job_root, marker, attack
):
    first = _warm_job(add, 1, 2)
    first.launch()
    assert first.result() == 3  # the worker has decoded add
    job = _warm_job(add, 3, 4)
    path = job_root / job.name / "function.bundle"
    path.unlink()
    if attack == "replaced":

        def planted(x, y):
            marker.touch()
            return x * y

        path.write_bytes(rc.dumps(planted, purpose=FUNCTION_PURPOSE))
    job.launch()
    with pytest.raises(rc.IntegrityError, match="function.bundle (does not match|is missing)"):
        job.result()
    assert not marker.exists()
    again = _warm_job(add, 5, 6)
    again.launch()
    assert again.result() == 11


def test_a_warm_job_sees_the_clients_globals_never_what_an_earlier_job_left(job_root):
    """A warm worker reuses a decoded function only while nothing a job did changed it:
    each call sees the values the client sent, as a cold call does."""
    ns: dict = {}
    exec("calls = 0\ndef count():\n    global calls\n    calls += 1\n    return calls\n", ns)
    count = ns["count"]  # travels by value (its module is not importable)
    with RemoteExecutor(keep_alive_period_in_seconds=30, stream_logs=False) as ex:
        assert [ex.submit(count).result(timeout=30) for _ in range(3)] == [1, 1, 1]
        ns["calls"] = 10
        assert ex.submit(count).result(timeout=30) == 11
        ns["calls"] = 0  # back to bytes a job of this worker already ran
        assert ex.submit(count).result(timeout=30) == 1
    assert [remote(count, stream_logs=False)() for _ in range(2)] == [1, 1]  # cold: the same
