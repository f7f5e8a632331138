"""The backend contract: launch a job whose folder is ready; watch, stop, read its logs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..job import JobPaths
    from ..settings import Settings

__all__ = ["Backend", "Launched"]


class Launched(Protocol):
    """A job started by a backend."""

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds; the exit code (negative: signal), or None if running."""

    def stop(self) -> None:
        """Stop the job now (its whole process tree)."""

    def log_chunk(self, stream: str, offset: int) -> bytes:
        """Bytes of the job's ``stdout`` or ``stderr`` from ``offset`` on."""

    def lost_before_start(self) -> bool:
        """The job never reached its runner (e.g. a retiring warm worker): relaunch freely."""


class Backend(Protocol):
    name: str

    def launch(self, paths: JobPaths, key: bytes, settings: Settings) -> Launched:
        """Start the job in ``paths`` with ``key`` handed over through the launch channel."""
