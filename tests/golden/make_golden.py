"""Write golden artifacts with this environment's Python and library versions.

Run once per environment to freeze (the artifacts are committed):

    # an older stack, in a throwaway venv
    python3.10 -m venv /tmp/goldenv
    /tmp/goldenv/bin/pip install numpy==1.26.4 pandas==2.2.3 pyarrow==15.0.2 scipy==1.11.4 \\
        scikit-learn==1.3.2 skops==0.9.0 cloudpickle==3.0.0 fsspec blake3 pyyaml
    /tmp/goldenv/bin/pip install --no-deps xgboost==2.0.3
    PYTHONPATH=src /tmp/goldenv/bin/python tests/golden/make_golden.py

    # the torch stack of today (torch's old CPU builds do not install here)
    PYTHONPATH=src .venv/bin/python tests/golden/make_golden.py --only torch_state torch_tensors

    # today's stack, every object: read by the oldest supported stack (make compat)
    PYTHONPATH=src .venv/bin/python tests/golden/make_golden.py --suffix 2026-11

For every object: ``<env>/<name>/bundle/`` (remote_codecs), ``<env>/<name>/object.pkl``
(cloudpickle, the same object), ``<env>/<name>/predictions.npy`` for models, and
``<env>/versions.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from objects import GOLDEN, predictions  # noqa: E402

LIBS = {
    "numpy": "numpy",
    "pandas": "pandas",
    "pyarrow": "pyarrow",
    "scipy": "scipy",
    "sklearn": "scikit-learn",
    "xgboost": "xgboost",
    "torch": "torch",
    "cloudpickle": "cloudpickle",
    "skops": "skops",
}


def available(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for module in LIBS:
        if available(module):
            out[module] = importlib.import_module(module).__version__
    return out


def label(v: dict[str, str]) -> str:
    """The environment's name: its Python and the versions of the main libraries."""
    parts = [f"py{''.join(v['python'].split('.')[:2])}"]
    short = {
        "numpy": "np",
        "pandas": "pd",
        "pyarrow": "pa",
        "sklearn": "sk",
        "xgboost": "xgb",
        "torch": "torch",
    }
    for module, tag in short.items():
        if module in v:
            parts.append(f"{tag}{v[module]}")
    return "-".join(parts).replace("+", "_")


def main() -> None:
    import cloudpickle
    import numpy as np

    import remote_codecs as rc

    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*")
    parser.add_argument(
        "--suffix", default="", help="appended to the folder name (a second set from one env)"
    )
    args = parser.parse_args()
    names = [
        n
        for n in GOLDEN
        if (not args.only or n in args.only) and all(available(m) for m in GOLDEN[n][1])
    ]
    v = versions()
    env = os.path.join(HERE, label(v) + (f"-{args.suffix}" if args.suffix else ""))
    os.makedirs(env, exist_ok=True)
    with open(os.path.join(env, "versions.json"), "w") as f:
        json.dump(v, f, indent=1, sort_keys=True)
    for name in names:
        obj = GOLDEN[name][0]()
        folder = os.path.join(env, name)
        rc.save(obj, os.path.join(folder, "bundle"))
        with open(os.path.join(folder, "object.pkl"), "wb") as f:
            f.write(cloudpickle.dumps(obj))
        pred = predictions(obj)
        if pred is not None:
            np.save(os.path.join(folder, "predictions.npy"), pred)
        print(f"{env}/{name}")


if __name__ == "__main__":
    main()
