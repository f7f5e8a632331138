"""The user-defined type the tutorial codec stores: nothing here knows about codecs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Histogram:
    """Counts of values falling into bins: ``edges`` has one more entry than ``counts``."""

    edges: np.ndarray
    counts: np.ndarray
    label: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, values: np.ndarray, bins: int = 10, label: str = "") -> Histogram:
        counts, edges = np.histogram(values, bins=bins)
        return cls(edges=edges, counts=counts, label=label)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Histogram)
            and self.label == other.label
            and self.meta == other.meta
            and self.edges.dtype == other.edges.dtype
            and self.counts.dtype == other.counts.dtype
            and np.array_equal(self.edges, other.edges)
            and np.array_equal(self.counts, other.counts)
        )
