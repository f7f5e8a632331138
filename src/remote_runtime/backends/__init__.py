"""Backends start jobs somewhere: ``local`` (a process per job, or a warm worker).
One module per engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..settings import Settings
    from .base import Backend

__all__ = ["get_backend"]


def get_backend(settings: Settings) -> Backend:
    """The backend named by ``settings.backend`` (its engine is imported only now)."""
    if settings.backend == "local":
        from .local import LocalBackend

        return LocalBackend.shared()
    raise ValueError(f"unknown backend {settings.backend!r}: use 'local'")
