"""The Ray backend: each job is a Ray Job, submitted through the Ray Jobs API.

The entrypoint is ``<absolute python> -m remote_runtime.bootstrap <job_uri>``; the job's
key, the storage credentials of the client (``AWS_*``) and the job's environment
variables travel in the Ray job's runtime environment (the launch channel), never
through the store. ``dependencies`` become the runtime environment's pip list (then the
entrypoint runs Ray's ``python`` of that environment). Results and exceptions still go
through the job folder; Ray's job states are mapped to ours, and Ray's logs are copied to
the job's ``logs/`` when it ends.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from ..bootstrap import KEY_ENV
from ..job import JobPaths, JobState
from ..settings import Settings
from .local import _client_paths

__all__ = ["RayBackend", "RayJob"]

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


class RayJob:
    """A job submitted to Ray (the backend's ``Launched``)."""

    def __init__(
        self, client: Any, submission_id: str, paths: JobPaths, interval: float = 0.2
    ) -> None:
        self.client = client
        self.submission_id = submission_id
        self.paths = paths
        self.interval = interval
        self._logs: str | None = None
        self._code: int | None = None

    def _info(self) -> Any:
        return self.client.get_job_info(self.submission_id)

    def state(self) -> str:
        return STATES.get(str(self._info().status.value), JobState.PENDING)

    def wait(self, timeout: float | None = None) -> int | None:
        if self._code is not None:
            return self._code
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self._info()
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

    def stop(self) -> None:
        try:
            self.client.stop_job(self.submission_id)
        except Exception:
            pass
        self.wait(30)

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
        try:
            self.paths.store.write_bytes(f"{self.paths.logs}/stdout.log", text.encode())
        except Exception:
            pass

    def log_chunk(self, stream: str, offset: int) -> bytes:
        if stream != "stdout":
            return b""  # Ray merges the job's stderr into one log
        return self._all_logs().encode()[offset:]

    def lost_before_start(self) -> bool:
        return False


class RayBackend:
    """Submits jobs to a Ray cluster through its Jobs API."""

    name = "ray"
    _clients: dict[str, RayBackend] = {}
    _lock = threading.Lock()

    def __init__(self, address: str) -> None:
        from ray.job_submission import JobSubmissionClient

        self.address = address
        self.client = JobSubmissionClient(address)

    @classmethod
    def for_address(cls, address: str | None) -> RayBackend:
        resolved = _address(address)
        with cls._lock:
            if resolved not in cls._clients:
                cls._clients[resolved] = cls(resolved)
            return cls._clients[resolved]

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
        submission_id = self.client.submit_job(
            entrypoint=entrypoint,
            submission_id=paths.name,
            runtime_env=runtime_env,
            metadata={"remote_runtime_job": paths.name},
        )
        paths.write_status(
            JobState.PENDING,
            backend={"name": "ray", "address": self.address, "submission_id": submission_id},
        )
        return RayJob(self.client, submission_id, paths)


def stop_detached(address: str, submission_id: str) -> None:
    """Stop a Ray job started by another client (from the CLI or a re-attached future)."""
    RayBackend.for_address(address).client.stop_job(submission_id)
