"""Errors raised by remote_runtime (codec errors come from remote_codecs, re-exported here)."""

from __future__ import annotations

from remote_codecs.errors import DeserializationError, IntegrityError, SerializationError

from .records import JobRecordError

__all__ = [
    "DeserializationError",
    "IntegrityError",
    "JobFailedError",
    "JobRecordError",
    "JobTimeoutError",
    "RemoteFunctionError",
    "RemoteRuntimeError",
    "RuntimeEnvironmentError",
    "SerializationError",
    "ServiceError",
]


class RemoteRuntimeError(Exception):
    """Base class of the errors raised by remote_runtime itself."""


class RemoteFunctionError(RemoteRuntimeError):
    """The remote function raised an exception that cannot be rebuilt here.

    ``type_name``, ``message`` and ``remote_traceback`` describe the original exception.
    """

    def __init__(
        self, type_name: str, message: str, remote_traceback: str = "", job_name: str = ""
    ) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        self.job_name = job_name

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, self.message, self.remote_traceback, self.job_name))


class RuntimeEnvironmentError(RemoteRuntimeError):
    """The job's environment could not be prepared (interpreter version, dependencies,
    pre-execution commands): nothing of the user's function ran."""


class JobFailedError(RemoteRuntimeError):
    """The job ended without a result or an exception: killed, crashed, or stopped.

    ``exit_code`` is the process exit code (negative: killed by that signal), when known.
    """

    def __init__(self, message: str, *, job_name: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        self.job_name = job_name
        self.exit_code = exit_code


class JobTimeoutError(JobFailedError, TimeoutError):
    """The job ran longer than ``max_runtime_in_seconds`` and was stopped."""


class ServiceError(RemoteRuntimeError):
    """The job store or the cluster could not be reached, or refused a request."""
