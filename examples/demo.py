"""The main demo: encode rich values into portable bundles, inspect and load them back."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import remote_codecs as rc


@dataclass
class Experiment:
    name: str
    weights: np.ndarray


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="remote-demo-"))
    value = {
        "lr": 0.1,
        "tags": ("baseline", "cpu"),
        "X": np.random.default_rng(0).normal(size=(1000, 8)),
        "exp": Experiment("run-1", np.arange(5.0)),
    }

    print("== codecs: save, inspect, load ==")
    manifest = rc.save(value, root / "bundle", key=b"demo-secret")
    print(manifest)
    back = rc.load(root / "bundle", key=b"demo-secret")
    assert np.array_equal(back["X"], value["X"]) and back["exp"].name == "run-1"
    print("loaded back:", sorted(back), "| X", back["X"].shape, back["X"].dtype)

    plain = rc.dumps({"X": value["X"], "lr": 0.1})
    print(
        f"\nsingle-file form: {len(plain):,} bytes; loads without any pickle:",
        sorted(rc.loads(plain, allow_pickle=False)),
    )


if __name__ == "__main__":
    main()
