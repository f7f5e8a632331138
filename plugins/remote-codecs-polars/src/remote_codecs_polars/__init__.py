"""remote_codecs plugin for polars.

Registered through the ``remote_codecs.codecs`` entry point: ``register`` runs when the
registry is first used and registers the codecs *by name*, so polars is imported only
when a polars object is encoded or decoded.
"""

from __future__ import annotations

from typing import Any

__all__ = ["register"]

PROVIDER = "remote-codecs-polars"


def register(registry: Any) -> None:
    """Called with the registry by remote_codecs when it loads its plugins."""
    registry.register_lazy(
        "polars.DataFrame/arrow",
        "remote_codecs_polars.codec:DataFrameCodec",
        ["polars.dataframe.frame.DataFrame"],
        provider=PROVIDER,
    )
    registry.register_lazy(
        "polars.Series/arrow",
        "remote_codecs_polars.codec:SeriesCodec",
        ["polars.series.series.Series"],
        provider=PROVIDER,
    )
    registry.reject(
        "polars.lazyframe.frame.LazyFrame",
        "A polars LazyFrame is a query plan over local data: collect() it and pass the DataFrame, "
        "or pass the path of the data and scan it inside the function.",
    )
