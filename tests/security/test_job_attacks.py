"""Attacks on a job folder by someone who can write the job root but holds no key.

Written from the outside (README.md, the public API, issue 10). The attacker rewrites,
swaps or replaces the bundles of real jobs; the job must refuse its inputs, the client must
refuse results and exceptions, with a typed error naming the file, quickly, without running
anything planted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import attacks
import cloudpickle
import numpy as np
import pytest
from attacks import Blocked, Box, bounded, evil_pickle, refusal

import remote_codecs as rc
from remote_runtime import RemoteRuntimeError, get_future, remote
from servers import bundle_of, copy_bundle, remove_bundle, status_record

pytestmark = pytest.mark.timeout(60)

TAMPER = """
import sys, pathlib
root, role, name = sys.argv[1:4]
for job in pathlib.Path(root).iterdir():
    if name == "bundle":  # one file: flip a byte of the member that carries the value
        import struct, zipfile
        p = job / f"{role}.bundle"
        data = bytearray(p.read_bytes())
        member = "skeleton.pkl" if role == "function" else "manifest.json"
        info = zipfile.ZipFile(p).getinfo(member)
        at = info.header_offset
        n, m = struct.unpack("<HH", data[at + 26 : at + 30])
        data[at + 30 + n + m + info.file_size // 2] ^= 0x55
    else:
        p = job / role / name
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x55
    p.write_bytes(bytes(data))
"""


def total(x):
    return {"sum": int(x.sum()), "x": x}


def fails(x):
    raise ValueError(f"bad {x}")


def leaves_a_child():
    return subprocess.Popen(["sleep", "45"], start_new_session=False).pid


def sees_env(name):
    return os.environ.get(name)


def env_len(name):
    return len(os.environ.get(name, ""))


def touches(marker, x):
    os.mkdir(marker)
    return x


def returns_box():
    return Box("honest", np.arange(3))


# Jobs see only their workspace and the environment (as on SageMaker), not this folder:
# the helper module travels by value, as a user's local module would with
# include_local_workdir.
cloudpickle.register_pickle_by_value(attacks)


def _jobs(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()} if root.exists() else set()


def _run(root: Path, fn, *args, **settings) -> tuple[str, object]:
    """Run ``fn`` as a job; return its name and its value (or the exception raised)."""
    before = _jobs(root)
    try:
        value: object = remote(fn, stream_logs=False, **settings)(*args)
    except Exception as e:
        value = e
    (name,) = _jobs(root) - before
    return name, value


BIG = 300_000  # elements: an array this long makes a bundle folder (over 1 MiB), not one file

FINISHED = {
    "ok": (total, (np.arange(5),)),
    "big": (total, (np.arange(BIG),)),
    "ok2": (total, (np.arange(7),)),
    "bad": (fails, (3,)),
    "bad2": (fails, (1,)),
    "box": (returns_box, ()),
    "none": (sees_env, ("NOPE",)),
    "plain": (json.loads, ('{"a": [1, 2], "b": null}',)),
}


@pytest.fixture(scope="module")
def finished_jobs(tmp_path_factory):
    """Real jobs run once for the module: their folders and the client key they were
    signed with, cloned into each test's own root by ``jobs``."""
    base = tmp_path_factory.mktemp("finished")
    root = base / "jobs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REMOTE_RUNTIME_S3_ROOT_URI", str(root))
        mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
        mp.chdir(base)
        made = {label: _run(root, fn, *args) for label, (fn, args) in FINISHED.items()}
    return root, base / "cache" / "remote-runtime" / "client.key", made


@pytest.fixture
def jobs(finished_jobs, job_root, tmp_path):
    """label -> (job name, value) of finished jobs, cloned into this test's root, with the
    client key in this test's cache."""
    root, key, made = finished_jobs
    shutil.copytree(root, job_root, symlinks=True)
    mine = tmp_path / "cache" / "remote-runtime"
    mine.mkdir(parents=True, exist_ok=True)
    shutil.copy2(key, mine / "client.key")
    return made


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))


def _result(name: str):
    return bounded(lambda: get_future(name).result(), limit=15)


# ---------------------------------------------------------------- tampered job inputs


@pytest.mark.parametrize(
    ("role", "file", "size"),
    [
        ("function", "bundle", 4),  # small values: one file, <role>.bundle
        ("arguments", "bundle", 4),
        ("arguments", "manifest.json", BIG),  # large ones: a bundle folder
        ("arguments", "0.npy", BIG),
    ],
)
def test_job_refuses_tampered_inputs(job_root, tmp_path, marker, role, file, size):
    tamper = tmp_path / "tamper.py"
    tamper.write_text(TAMPER)
    # the pre-execution command plays the attacker: it rewrites the bundle after the client
    # wrote it and before the job reads it
    command = f"{sys.executable} {tamper} {job_root} {role} {file}"
    _name, value = _run(
        job_root, touches, str(marker), np.arange(size), pre_execution_commands=[command]
    )
    assert isinstance(value, rc.DeserializationError), f"{type(value).__name__}: {value}"
    assert file in str(value) or "signature" in str(value), str(value)
    assert role in str(value), str(value)


# ------------------------------------------------------------- tampered results / exception


def test_client_refuses_every_flipped_file_of_results_and_exception(job_root, jobs):
    (ok, value), (bad, err), (big, _) = jobs["ok"], jobs["bad"], jobs["big"]
    assert value["sum"] == 10
    assert isinstance(err, ValueError)
    checked, problems = [], []
    # a bundle folder: each of its files flipped in turn
    folder = job_root / big / "results"
    for path in sorted(folder.iterdir()):
        keep = path.read_bytes()
        _flip(path)
        try:
            refusal(lambda: _result(big), path.name, error=rc.IntegrityError)
        except AssertionError as e:
            problems.append(f"results/{path.name}: {e}")
        path.write_bytes(keep)
        checked.append(f"results/{path.name}")
    # single-file bundles: one byte flipped at a time, every 7th byte (zip headers,
    # manifest, parts, the zip's directory): refused (as tampered data, or as no bundle at
    # all), or, where the byte is zip bookkeeping no value depends on (a member's mtime),
    # the very value that was signed; never another value
    for name, role in [(ok, "results"), (bad, "exception")]:
        path = job_root / name / f"{role}.bundle"
        keep = path.read_bytes()
        refused = 0
        for at in range(0, len(keep), 7):
            flipped = bytearray(keep)
            flipped[at] ^= 0x55
            path.write_bytes(bytes(flipped))
            try:
                got = _result(name)
            except rc.DeserializationError as e:
                refused += 1
                if f"{role}.bundle" not in str(e):
                    problems.append(f"{role}.bundle byte {at}: the error names no file: {e}")
                continue
            except ValueError as e:  # the job's own exception, rebuilt
                if role != "exception" or str(e) != "bad 3":
                    problems.append(f"{role}.bundle byte {at}: another exception {e!r}")
                continue
            except Exception as e:
                problems.append(f"{role}.bundle byte {at}: {type(e).__name__}: {e}")
                continue
            if role != "results" or got["sum"] != 10 or list(got["x"]) != list(range(5)):
                problems.append(f"{role}.bundle byte {at}: silently loaded {got!r}")
        path.write_bytes(keep)
        assert refused > len(keep) // 7 * 0.8, (role, refused, len(keep))
        checked.append(f"{role}.bundle")
    assert "results/0.npy" in checked and "exception.bundle" in checked, checked
    assert problems == [], "\n".join(problems[:20])
    # untouched again, all read back: the refusals were about the flips
    assert get_future(ok).result()["sum"] == 10
    assert get_future(big).result()["sum"] == sum(range(BIG))
    with pytest.raises(ValueError, match="bad 3"):
        get_future(bad).result()


@pytest.mark.parametrize("which", ["manifest.json", "0.npy", "bundle"])
def test_fifo_in_results_fails_fast(job_root, which, jobs):
    name, _value = jobs["ok" if which == "bundle" else "big"]
    path = job_root / name / ("results.bundle" if which == "bundle" else f"results/{which}")
    path.unlink()
    os.mkfifo(path)
    refusal(lambda: bounded(lambda: get_future(name).result(), [path]), which)


@pytest.mark.parametrize("which", ["results/0.npy", "results.bundle"])
def test_results_part_symlinked_outside_is_refused(job_root, tmp_path, jobs, which):
    name, _value = jobs["big" if "/" in which else "ok"]
    part = job_root / name / which
    outside = tmp_path / "outside"
    shutil.copyfile(part, outside)  # same bytes: only the symlink check can refuse
    part.unlink()
    part.symlink_to(outside)
    exc = refusal(lambda: _result(name), part.name)
    if which == "results.bundle":  # the reason, and no other (its size is no reason)
        assert "symbolic link" in str(exc) and "bytes" not in str(exc), str(exc)


def test_an_oversized_results_file_is_refused_unread(job_root, jobs):
    name, _value = jobs["ok"]
    path = job_root / name / "results.bundle"
    with open(path, "r+b") as f:
        f.truncate(200 << 20)  # sparse: no disk, but a naive read would allocate it
    exc = refusal(lambda: _result(name), "results.bundle", error=rc.IntegrityError)
    assert f"{200 << 20} bytes, more than it may hold" in str(exc), str(exc)


def test_junk_status_json_is_a_typed_error_naming_it(job_root, jobs):
    name, _ = jobs["ok"]
    (job_root / name / "status.json").write_text("{not json")
    with pytest.raises(Exception) as info:
        get_future(name).result()
    assert isinstance(info.value, (rc.DeserializationError, RemoteRuntimeError)), repr(info.value)
    assert not isinstance(info.value, json.JSONDecodeError) or isinstance(
        info.value, rc.DeserializationError
    ), repr(info.value)
    assert "status.json" in str(info.value), str(info.value)


def test_status_json_fifo_fails_fast(job_root, jobs):
    name, _ = jobs["ok"]
    path = job_root / name / "status.json"
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(Exception) as info:
        bounded(lambda: get_future(name).result(), [path], limit=5)
    assert not isinstance(info.value, Blocked), "reading status.json blocked on a FIFO"
    assert "status.json" in str(info.value), repr(info.value)


# ----------------------------------------------------------------------------- role swaps


def _replace(job: Path, src_role: str, dst: Path, dst_role: str) -> None:
    copy_bundle(bundle_of(job, src_role), dst, dst_role)


@pytest.mark.parametrize("label", ["ok", "big"])
@pytest.mark.parametrize("src", ["arguments", "function"])
def test_inputs_copied_over_results_are_refused(job_root, src, jobs, label):
    name, _value = jobs[label]
    _replace(job_root / name, src, job_root / name, "results")
    err = refusal(lambda: _result(name), "results", error=rc.IntegrityError)
    assert "KeyError" not in str(err)


def test_arguments_copied_over_exception_are_refused(job_root, jobs):
    name, err = jobs["bad"]
    assert isinstance(err, ValueError)
    _replace(job_root / name, "arguments", job_root / name, "exception")
    refusal(lambda: _result(name), "exception", error=rc.IntegrityError)


def test_results_of_another_job_are_refused(job_root, jobs):
    a, va = jobs["ok"]
    b, vb = jobs["ok2"]
    assert (va["sum"], vb["sum"]) == (10, 21)
    _replace(job_root / a, "results", job_root / b, "results")
    refusal(lambda: _result(b), b, "results", error=rc.IntegrityError)
    # a folder-form result of another job, in place of a single-file one
    big, _ = jobs["big"]
    _replace(job_root / big, "results", job_root / b, "results")
    refusal(lambda: _result(b), b, "results", error=rc.IntegrityError)


def test_exception_of_another_job_is_refused(job_root, jobs):
    a, _ = jobs["bad2"]
    b, _ = jobs["bad"]
    _replace(job_root / a, "exception", job_root / b, "exception")
    refusal(lambda: _result(b), b, "exception", error=rc.IntegrityError)


# ------------------------------------------------------------ attacker-written bundles


def _plant_results(job_root: Path, name: str, marker: Path, form: str = "folder") -> None:
    folder = job_root / name / "results"
    remove_bundle(job_root / name, "results")
    rc.save(Box("x", 1), folder, purpose=f"remote-runtime job {name}: results")
    (folder / "skeleton.pkl").write_bytes(evil_pickle(marker))
    m = json.loads((folder / "manifest.json").read_text())
    import hashlib

    data = (folder / "skeleton.pkl").read_bytes()
    m["skeleton"].update(size=len(data), digest="sha256:" + hashlib.sha256(data).hexdigest())
    (folder / "manifest.json").write_text(json.dumps(m))
    if form == "file":
        _folder_to_file(folder)


def _folder_to_file(folder: Path) -> None:
    """Turn a planted bundle folder into the single-file form (a stored zip)."""
    import zipfile

    with zipfile.ZipFile(folder.parent / f"{folder.name}.bundle", "w") as z:
        for path in sorted(folder.iterdir()):
            z.write(path, path.name)
    shutil.rmtree(folder)


def _plant_exception(job_root: Path, name: str, marker: Path, form: str = "folder") -> None:
    folder = job_root / name / "exception"
    with zipfile.ZipFile(bundle_of(job_root / name, "exception")) as z:
        m = json.loads(z.read("manifest.json"))
    value = m["skeleton"]["value"]
    import base64

    value["pickled"] = {"$bytes": base64.b64encode(evil_pickle(marker)).decode()}
    m.pop("signature", None)
    remove_bundle(job_root / name, "exception")
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(m))
    if form == "file":
        _folder_to_file(folder)


@pytest.mark.parametrize("form", ["folder", "file"])
def test_unsigned_planted_results_are_refused_with_the_key(job_root, marker, jobs, form):
    name, _ = jobs["ok"]
    _plant_results(job_root, name, marker, form)
    refusal(lambda: _result(name), "results", error=rc.IntegrityError)


@pytest.mark.parametrize("form", ["folder", "file"])
def test_unsigned_planted_exception_is_refused_with_the_key(job_root, marker, jobs, form):
    name, _ = jobs["bad"]
    _plant_exception(job_root, name, marker, form)
    refusal(lambda: _result(name), "exception", error=rc.IntegrityError)


# ------------------------------------------------------------------- key-less re-attach


@pytest.fixture
def another_machine(tmp_path, monkeypatch):
    """Switch to a client whose cache holds no key (the job root is still reachable)."""

    def switch():
        empty = tmp_path / "other-machine-cache"
        empty.mkdir()
        monkeypatch.setenv("XDG_CACHE_HOME", str(empty))

    return switch


def test_plain_results_load_without_the_key(job_root, another_machine, jobs):
    plain = [jobs["none"], jobs["ok"], jobs["plain"]]
    another_machine()
    for name, expected in plain:
        got = get_future(name).result()
        if isinstance(expected, dict) and "x" in expected:
            assert got["sum"] == expected["sum"] and (got["x"] == expected["x"]).all()
        else:
            assert got == expected


def test_planted_results_are_never_unpickled_without_the_key(
    job_root, another_machine, marker, jobs
):
    name, _ = jobs["ok"]
    _plant_results(job_root, name, marker)
    another_machine()
    err = refusal(lambda: _result(name), "key")
    assert "client.key" in str(err) or "XDG_CACHE_HOME" in str(err) or "copy" in str(err), str(err)


def test_planted_exception_is_never_unpickled_without_the_key(
    job_root, another_machine, marker, jobs
):
    name, _ = jobs["bad"]
    _plant_exception(job_root, name, marker)
    another_machine()
    with pytest.raises(Exception) as info:
        _result(name)
    assert not isinstance(info.value, Blocked)
    # a ValueError rebuilt from the planted pickle would mean it was unpickled; the marker
    # fixture checks that nothing ran


def test_honest_pickled_results_without_the_key_are_not_called_tampered(
    job_root, another_machine, jobs
):
    name, value = jobs["box"]
    assert isinstance(value, Box)
    another_machine()
    err = refusal(lambda: _result(name), "key")
    assert "tamper" not in str(err).lower(), str(err)
    assert "client.key" in str(err) or "XDG_CACHE_HOME" in str(err) or "copy" in str(err), str(err)


def test_honest_exception_without_the_key_is_not_called_tampered(job_root, another_machine, jobs):
    name, _ = jobs["bad"]
    another_machine()
    with pytest.raises(Exception) as info:
        _result(name)
    assert "tamper" not in str(info.value).lower(), str(info.value)
    assert isinstance(info.value, (ValueError, RemoteRuntimeError)), repr(info.value)


# --------------------------------------------------------- the folder's records not trusted


def test_symlinked_results_folder_planted_before_the_function_ends(job_root, tmp_path):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "1important.txt").write_text("keep me")
    (outside / "0.npy").write_text("keep me too")
    plant = tmp_path / "plant.py"
    plant.write_text(
        "import sys, pathlib\n"
        "for job in pathlib.Path(sys.argv[1]).iterdir():\n"
        "    (job / 'results').symlink_to(sys.argv[2], target_is_directory=True)\n"
    )
    command = f"{sys.executable} {plant} {job_root} {outside}"
    _name, value = _run(job_root, total, np.arange(5), pre_execution_commands=[command])
    assert sorted(p.name for p in outside.iterdir()) == ["0.npy", "1important.txt"]
    assert (outside / "1important.txt").read_text() == "keep me"
    assert (outside / "0.npy").read_text() == "keep me too"
    assert isinstance(value, Exception), f"the job wrote its results through a symlink: {value!r}"


def test_secrets_stay_out_of_the_store(job_root):
    secret = "s3cr3t-token-value-42"
    name, value = _run(job_root, env_len, "API_TOKEN", environment_variables={"API_TOKEN": secret})
    assert value == len(secret)
    leaked = [
        str(p.relative_to(job_root))
        for p in (job_root / name).rglob("*")
        if p.is_file() and secret.encode() in p.read_bytes()
    ]
    assert leaked == [], f"the secret is written in {leaked}"


def test_no_process_outlives_its_job(job_root):
    _name, pid = _run(job_root, leaves_a_child)
    assert isinstance(pid, int), pid
    try:
        for _ in range(30):  # the launcher may reap the group just after the result
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return
            time.sleep(0.1)
        pytest.fail(f"the job's child {pid} is still running after the job ended")
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_cancel_does_not_signal_a_pid_planted_in_status_json(job_root, jobs):
    name, _ = jobs["ok"]
    victim = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        path = job_root / name / "status.json"
        status = status_record(path.parent)
        status.update(state="Running", pid=victim.pid)
        for k in ("pgid", "process_group"):
            if k in status:
                status[k] = victim.pid
        path.write_text(json.dumps(status))
        cli = Path(sys.executable).parent / "remote-runtime"
        subprocess.run(
            [str(cli), "jobs", "cancel", name],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        with pytest.raises(subprocess.TimeoutExpired):  # still running: not signalled
            victim.wait(timeout=1)
    finally:
        victim.kill()
        victim.wait()
