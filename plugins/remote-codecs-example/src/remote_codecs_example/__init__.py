"""A tutorial remote_codecs plugin: a codec for the ``Histogram`` type.

``register`` is the entry point (see pyproject.toml). It registers the codec *lazily*,
by import string and type name, so installing the plugin costs nothing at start-up:
the codec module (and numpy) is imported the first time a Histogram is seen.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Histogram", "register"]


def __getattr__(name: str) -> Any:
    # ``Histogram`` is imported on first use: this package is imported whenever
    # remote_codecs loads its plugins, and must not import numpy then.
    if name == "Histogram":
        from .histogram import Histogram

        return Histogram
    raise AttributeError(name)


def register(registry: Any) -> None:
    registry.register_lazy(
        "example.Histogram/npy",  # the codec's id, as in the class
        "remote_codecs_example.codec:HistogramCodec",  # where the class lives
        ["remote_codecs_example.histogram.Histogram"],  # the types it handles
        provider="remote-codecs-example",  # named in errors when the plugin is missing
    )
