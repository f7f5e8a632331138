"""Backends start jobs somewhere: ``local`` (a process per job, or a warm worker) and
``ray`` (a Ray Job on a Ray cluster, through the Ray Jobs API). One module per engine;
an engine's library is imported only when its backend is chosen."""

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
    if settings.backend == "ray":
        from .ray import RayBackend

        return RayBackend.for_address(settings.ray_address, settings.ray_timeout_in_seconds)
    raise ValueError(f"unknown backend {settings.backend!r}: use 'local' or 'ray'")
