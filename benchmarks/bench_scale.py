"""Scale-out: a 256 MiB bundle on a real S3 server (rclone serve s3 on 127.0.0.1) vs a raw
s3fs put/get of the same bytes, and the same 20 jobs on the local and the Ray backend.

Target (issue 6): S3 save/load throughput >= 0.8x raw s3fs put/get.
"""

from __future__ import annotations

import os
import sys

from harness import Case, at_least

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

PAYLOAD = int(os.environ.get("BENCH_S3_BYTES", 256 << 20))
JOBS = 20

CASES = [
    Case("s3fs_put", "s3 save", payload_bytes=PAYLOAD, label="raw s3fs put"),
    Case(
        "rc_save_s3",
        "s3 save",
        baseline="s3fs_put",
        payload_bytes=PAYLOAD,
        target=at_least(0.8),
        label=f"save a {PAYLOAD >> 20} MiB bundle on S3",
    ),
    Case("s3fs_get", "s3 load", payload_bytes=PAYLOAD, label="raw s3fs get"),
    Case(
        "rc_load_s3",
        "s3 load",
        baseline="s3fs_get",
        payload_bytes=PAYLOAD,
        target=at_least(0.8),
        label=f"load a {PAYLOAD >> 20} MiB bundle from S3",
    ),
    Case("local_20_jobs", "20 jobs", repeat=1),
    Case("ray_20_jobs", "20 jobs", baseline="local_20_jobs", repeat=1),
]

ENV: dict[str, str] = {}
_servers: list = []


def setup(workdir):
    from servers import RayHead, S3Server

    s3 = S3Server(__import__("pathlib").Path(workdir) / "s3").start()
    _servers.append(s3)
    ENV.update(s3.env)
    os.environ.update(s3.env)
    import numpy as np

    import remote_codecs as rc

    a = np.ones(PAYLOAD // 8)
    rc.save(a, "s3://jobs/load.bundle")
    import s3fs

    s3fs.S3FileSystem().pipe_file("jobs/load.raw", a.tobytes())
    try:
        head = RayHead()
        os.environ.update(head.env)
        ENV.update(head.env)
        head.start(env=s3.env)
        _servers.append(head)
        ENV["BENCH_RAY_ADDRESS"] = head.address
    except Exception as exc:  # Ray missing: its case reports nan
        print(f"(no Ray head: {exc})")


def teardown(workdir):
    for server in reversed(_servers):
        server.stop()
    _servers.clear()


def _bytes():
    import numpy as np

    return np.ones(PAYLOAD // 8)


def s3fs_put(workdir, timer):
    import s3fs

    data = _bytes().tobytes()
    fs = s3fs.S3FileSystem()
    fs.ls("jobs")
    timer.start()
    fs.pipe_file("jobs/raw-put", data)


def rc_save_s3(workdir, timer):
    import remote_codecs as rc

    a = _bytes()
    rc.save([1], "s3://jobs/warm")
    timer.start()
    rc.save(a, "s3://jobs/rc-put")


def s3fs_get(workdir, timer):
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.ls("jobs")
    timer.start()
    fs.cat_file("jobs/load.raw")


def rc_load_s3(workdir, timer):
    import numpy  # noqa: F401

    import remote_codecs as rc

    rc.inspect("s3://jobs/load.bundle")  # pay the imports and the first connection
    timer.start()
    rc.load("s3://jobs/load.bundle")


def trivial(x):
    return x


def _jobs(workdir, timer, **settings):
    os.environ["REMOTE_RUNTIME_S3_ROOT_URI"] = "s3://jobs/bench-jobs"
    os.environ["XDG_CACHE_HOME"] = os.path.join(workdir, "cache")
    from remote_runtime import RemoteExecutor

    with RemoteExecutor(max_parallel_jobs=2, stream_logs=False, **settings) as ex:
        timer.start()
        assert list(ex.map(trivial, range(JOBS))) == list(range(JOBS))


def local_20_jobs(workdir, timer):
    _jobs(workdir, timer)


def ray_20_jobs(workdir, timer):
    address = os.environ.get("BENCH_RAY_ADDRESS")
    if not address:
        return float("nan")
    _jobs(workdir, timer, backend="ray", ray_address=address)
    return None
