"""The Ray backend: each job is a Ray Job, submitted through the Ray Jobs API.

The entrypoint is ``<absolute python> -m remote_runtime.bootstrap <job_uri>``; the job's
key, the storage credentials of the client (``AWS_*``) and the job's environment
variables travel in the Ray job's runtime environment (the launch channel), never
through the store. ``dependencies`` become the runtime environment's pip list (then the
entrypoint runs Ray's ``python`` of that environment). Results and exceptions still go
through the job folder; Ray's job states are mapped to ours, and Ray's logs are copied to
the job's ``logs/`` when it ends.

Every call to the cluster is bounded by ``ray_timeout_in_seconds``: the address is probed
with a plain TCP connection before a client is built, each HTTP request has a timeout, and
no lock is held while connecting. Each attempt of a job is a Ray job of its own (the
first named after the job, retries ``<name>-attempt<N>``), recorded in ``status.json``.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from ..bootstrap import KEY_ENV
from ..job import JobPaths, JobState
from ..settings import Settings
from .local import _client_paths

__all__ = ["RayBackend", "RayJob", "ray_job_state"]

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
_FORWARDED = ("AWS_", "GOOGLE_", "AZURE_", "FSSPEC_")

# Ray job states -> ours
STATES = {
    "PENDING": JobState.PENDING,
    "RUNNING": JobState.IN_PROGRESS,
    "SUCCEEDED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "STOPPED": JobState.STOPPED,
}


def _address(address: str | None) -> str:
    address = address or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS
    if address.startswith("ray://"):
        raise ValueError(
            f"ray_address={address!r}: give the Ray Jobs API (dashboard) address, e.g. {DEFAULT_ADDRESS}"
        )
    return address if "://" in address else f"http://{address}"


def _service_error(
    address: str, job: str | None, doing: str, exc: BaseException | str
) -> Exception:
    from ..errors import ServiceError

    why = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    subject = f"job {job}: " if job else ""
    return ServiceError(
        f"{subject}the Ray cluster at {address} {doing}: {why}. Check that the Ray head is "
        "running and that ray_address (or RAY_ADDRESS) names its Jobs API (dashboard) address."
    )


def check_address(address: str, timeout: float) -> None:
    """Fail fast, naming the address, if nothing accepts a TCP connection there."""
    parts = urlsplit(address)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=min(5.0, timeout)):
            pass
    except OSError as exc:
        raise _service_error(address, None, "could not be reached", exc) from exc


def _bounded_client(address: str, timeout: float) -> Any:
    """A JobSubmissionClient whose every HTTP request (its constructor's version check
    included) has a timeout."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient.__new__(JobSubmissionClient)
    request = JobSubmissionClient._do_request

    def bounded(method: str, endpoint: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", (min(5.0, timeout), timeout))
        return request(client, method, endpoint, **kwargs)

    client._do_request = bounded  # type: ignore[method-assign]
    JobSubmissionClient.__init__(client, address)
    return client


def _unreachable(exc: BaseException) -> bool:
    """A failure to talk to the cluster (as opposed to an answer it gave)."""
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    module = type(exc).__module__.split(".")[0]
    return module in ("requests", "urllib3")


class RayJob:
    """A job submitted to Ray (the backend's ``Launched``)."""

    def __init__(
        self,
        client: Any,
        submission_id: str,
        paths: JobPaths,
        interval: float = 0.2,
        *,
        address: str = "",
        timeout: float = 30.0,
    ) -> None:
        self.client = client
        self.submission_id = submission_id
        self.paths = paths
        self.interval = interval
        self.address = address
        self.timeout = timeout
        self._logs: str | None = None
        self._code: int | None = None
        self._unreachable_since: float | None = None

    def _info(self) -> Any:
        return self.client.get_job_info(self.submission_id)

    def state(self) -> str:
        return STATES.get(str(self._info().status.value), JobState.PENDING)

    def wait(self, timeout: float | None = None) -> int | None:
        if self._code is not None:
            return self._code
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self._poll()
            if self._code is not None:  # the cluster is silent but the folder says it ended
                return self._code
            if info is not None:
                status = str(info.status.value)
                if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                    code = getattr(info, "driver_exit_code", None)
                    if code is None:
                        code = 0 if status == "SUCCEEDED" else (-15 if status == "STOPPED" else 1)
                    self._code = int(code)
                    self._save_logs()
                    return self._code
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(
                self.interval
                if deadline is None
                else max(0.0, min(self.interval, deadline - time.monotonic()))
            )

    def _poll(self) -> Any:
        """Ray's record of the job; None while the cluster does not answer. When it stays
        silent past the timeout, the job folder decides: an ended job is reported as such,
        else a ServiceError names the cluster and the job."""
        try:
            info = self._info()
        except Exception as exc:
            if not _unreachable(exc):
                raise _service_error(
                    self.address, self.paths.name, "refused a request for the job's state", exc
                ) from exc
            now = time.monotonic()
            if self._unreachable_since is None:
                self._unreachable_since = now
            state = self._folder_state()
            if state in JobState.TERMINAL:
                self._code = 0 if state == JobState.COMPLETED else 1
                return None
            if now - self._unreachable_since > self.timeout:
                raise _service_error(
                    self.address,
                    self.paths.name,
                    f"has not answered for {now - self._unreachable_since:.0f} s (ray_timeout_in_seconds={self.timeout:g})",
                    f"{type(exc).__name__}: {exc}. The job may still be running: re-attach with "
                    f"remote_runtime.get_future({self.paths.name!r}) once the cluster answers",
                ) from exc
            return None
        self._unreachable_since = None
        return info

    def _folder_state(self) -> str | None:
        try:
            return str(self.paths.read_status().get("state"))
        except Exception:
            return None

    def stop(self) -> None:
        try:
            self.client.stop_job(self.submission_id)
        except Exception as exc:
            if _unreachable(exc):
                raise _service_error(
                    self.address,
                    self.paths.name,
                    "could not be asked to stop the job",
                    f"{type(exc).__name__}: {exc}. The job may still be running; cancel it again "
                    "once the cluster answers (remote-runtime jobs cancel NAME)",
                ) from exc
        self.wait(self.timeout)

    def _all_logs(self) -> str:
        if self._logs is not None:
            return self._logs
        try:
            return str(self.client.get_job_logs(self.submission_id))
        except Exception:
            return ""

    def _save_logs(self) -> None:
        """Ray keeps the job's output: copy it to the job folder, where the CLI looks."""
        self._logs = None
        text = self._all_logs()
        self._logs = text
        if self.paths.store.down:
            return  # no best-effort writes to a store known to be down
        try:
            self.paths.store.write_bytes(f"{self.paths.logs}/stdout.log", text.encode())
        except Exception:
            pass

    def log_chunk(self, stream: str, offset: int) -> bytes:
        if stream != "stdout":
            return b""  # Ray merges the job's stderr into one log
        from ..job import LOG_CHUNK

        return self._all_logs().encode()[offset:][:LOG_CHUNK]

    def lost_before_start(self) -> bool:
        return False


class RayBackend:
    """Submits jobs to a Ray cluster through its Jobs API."""

    name = "ray"
    _clients: dict[str, RayBackend] = {}
    _lock = threading.Lock()  # guards the dict only: never held while connecting

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        check_address(address, timeout)
        try:
            self.client = _bounded_client(address, timeout)
        except Exception as exc:
            if "Authentication" in type(exc).__name__:
                doing = "refused the client's authentication (RAY_AUTH_MODE / RAY_AUTH_TOKEN)"
            elif _unreachable(exc):
                doing = "did not answer"
            else:
                doing = "refused the connection"
            raise _service_error(address, None, doing, exc) from exc

    @classmethod
    def for_address(cls, address: str | None, timeout: float = 30.0) -> RayBackend:
        resolved = _address(address)
        with cls._lock:
            backend = cls._clients.get(resolved)
        if backend is not None:
            return backend
        backend = cls(resolved, timeout)
        with cls._lock:
            return cls._clients.setdefault(resolved, backend)

    def launch(self, paths: JobPaths, key: bytes, settings: Settings) -> RayJob:
        import json

        execution = paths.read_spec()["execution"]
        env_vars = {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED)}
        env_vars.update(settings.environment_variables or {})
        env_vars[KEY_ENV] = key.hex()
        env_vars["PYTHONUNBUFFERED"] = "1"
        paths_on_client = _client_paths()
        if paths_on_client:
            env_vars["PYTHONPATH"] = os.pathsep.join(paths_on_client)
        if paths.store.storage_options:
            env_vars["REMOTE_RUNTIME_STORAGE_OPTIONS"] = json.dumps(paths.store.storage_options)
        runtime_env: dict[str, Any] = {"env_vars": env_vars}
        python = settings.python or sys.executable
        if execution.get("requirements") is not None:
            text = paths.store.read_bytes(paths.requirements).decode()
            runtime_env["pip"] = [
                line.strip()
                for line in text.splitlines()
                if line.strip() and not line.startswith("#")
            ]
            env_vars["REMOTE_RUNTIME_IN_VENV"] = execution[
                "requirements"
            ]  # Ray built the environment
            python = "python"  # the runtime environment's interpreter
        entrypoint = f"{python} -m remote_runtime.bootstrap {paths.store.uri_of(paths.name)}"
        status = paths.read_status()
        attempt = int(status.get("attempt", 1))
        earlier = list((status.get("backend") or {}).get("submission_ids") or [])
        wanted = paths.name if attempt <= 1 and not earlier else f"{paths.name}-attempt{attempt}"
        # A head whose job agent is not up yet (just started, or busy) says so and asks
        # to try again later: nothing was submitted, so trying again is safe, for a while.
        give_up = time.monotonic() + self.timeout
        pause = 0.25
        while True:
            try:
                submission_id = self.client.submit_job(
                    entrypoint=entrypoint,
                    submission_id=wanted,
                    runtime_env=runtime_env,
                    metadata={"remote_runtime_job": paths.name, "attempt": str(attempt)},
                )
                break
            except Exception as exc:
                if "No available agent" in str(exc) and time.monotonic() + pause < give_up:
                    time.sleep(pause)
                    pause = min(pause * 2, 2.0)
                    continue
                doing = "could not be reached" if _unreachable(exc) else "refused the job"
                raise _service_error(self.address, paths.name, doing, exc) from exc
        paths.write_status(
            JobState.PENDING,
            backend={
                "name": "ray",
                "address": self.address,
                "submission_id": submission_id,
                "submission_ids": [*earlier, submission_id],
            },
        )
        return RayJob(self.client, submission_id, paths, address=self.address, timeout=self.timeout)


def stop_detached(address: str, submission_id: str, timeout: float = 30.0) -> None:
    """Stop a Ray job started by another client (from the CLI or a re-attached future)."""
    backend = RayBackend.for_address(address, timeout)
    try:
        backend.client.stop_job(submission_id)
    except Exception as exc:
        raise _service_error(address, None, f"could not stop Ray job {submission_id}", exc) from exc


def ray_job_state(
    address: str, submission_id: str, timeout: float = 30.0
) -> tuple[str, str] | None:
    """(Ray's status of the job, Ray's message), or None when the cluster does not answer
    (status "MISSING" when it answers that it does not know the job)."""
    try:
        info = RayBackend.for_address(address, timeout).client.get_job_info(submission_id)
    except Exception as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        if (
            _unreachable(cause)
            or "could not be reached" in str(exc)
            or "did not answer" in str(exc)
            or "authentication" in str(exc).lower()
        ):
            return None  # cannot tell from here
        return "MISSING", f"{type(exc).__name__}: {exc}"
    return str(info.status.value), str(getattr(info, "message", "") or "")
