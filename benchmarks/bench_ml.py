"""A 1 GiB numeric DataFrame and a 1 GiB torch state dict: save and load to a local
folder vs the same bytes through np.save/np.load, and vs cloudpickle.dumps + write.

Targets (issue 3): >= 0.8x raw np.save/np.load, >= 3x cloudpickle, peak RSS growth
<= 1.2x the payload (issue 14: none of them gets worse). BENCH_ML_BYTES sets the size.
Every save writes a new path (an earlier repeat's output is removed before the timer).
"""

from __future__ import annotations

import os

from harness import Case, at_least, fresh

PAYLOAD = int(os.environ.get("BENCH_ML_BYTES", 1 << 30))
COLS = 16
SIZE = f"{PAYLOAD / 2**20:,.0f} MiB" if PAYLOAD < 1 << 30 else f"{PAYLOAD / 2**30:g} GiB"
NAMES = {"frame": f"a {SIZE} DataFrame", "state": f"a {SIZE} torch state dict"}

CASES = []
for what in ("frame", "state"):
    CASES += [
        Case(f"raw_save_{what}", f"{what} save", label="np.save of the same bytes"),
        Case(
            f"rc_save_{what}",
            f"{what} save",
            baseline=f"raw_save_{what}",
            payload_bytes=PAYLOAD,
            target=at_least(0.8),
            label=f"save {NAMES[what]}",
        ),
        Case(f"pickle_save_{what}", f"{what} save", payload_bytes=PAYLOAD, label="cloudpickle"),
        Case(
            f"rc_save_{what}_vs_pickle",
            f"{what} save",
            baseline=f"pickle_save_{what}",
            payload_bytes=PAYLOAD,
            target=at_least(3.0),
            label=f"save {NAMES[what]} vs cloudpickle",
        ),
        Case(
            f"raw_load_{what}",
            f"{what} load",
            payload_bytes=PAYLOAD,
            label="np.load of the same bytes",
        ),
        Case(
            f"rc_load_{what}",
            f"{what} load",
            baseline=f"raw_load_{what}",
            payload_bytes=PAYLOAD,
            target=at_least(0.8),
            label=f"load {NAMES[what]}",
        ),
        Case(f"pickle_load_{what}", f"{what} load", payload_bytes=PAYLOAD, label="cloudpickle"),
        Case(
            f"rc_load_{what}_vs_pickle",
            f"{what} load",
            baseline=f"pickle_load_{what}",
            payload_bytes=PAYLOAD,
            target=at_least(3.0),
            label=f"load {NAMES[what]} vs cloudpickle",
        ),
    ]


def _frame():
    import numpy as np
    import pandas as pd

    rows = PAYLOAD // 8 // COLS
    return pd.DataFrame({f"c{i}": np.arange(rows, dtype=np.float64) * (i + 1) for i in range(COLS)})


def _state():
    import torch

    n = PAYLOAD // 4 // COLS
    return {f"layer{i}.weight": torch.arange(n, dtype=torch.float32) * (i + 1) for i in range(COLS)}


def _raw(what):
    import numpy as np

    return np.ones(PAYLOAD // 8)


def _make(what):
    return _frame() if what == "frame" else _state()


def setup(workdir):
    import cloudpickle
    import numpy as np

    import remote_codecs as rc

    for what in ("frame", "state"):
        obj = _make(what)
        rc.save(obj, os.path.join(workdir, f"load-{what}.bundle"))
        with open(os.path.join(workdir, f"load-{what}.pkl"), "wb") as f:
            f.write(cloudpickle.dumps(obj))
        del obj
    np.save(os.path.join(workdir, "load-raw.npy"), _raw("frame"))


def _warm(workdir):
    import numpy as np

    import remote_codecs as rc

    path = os.path.join(workdir, f"warm-{os.getpid()}")
    rc.save({"x": np.zeros(300_000)}, path)  # > 1 MiB: the hash thread starts here
    rc.load(path)


def _cases(what):
    def raw_save(workdir, timer):
        import numpy as np

        a = _raw(what)
        path = fresh(os.path.join(workdir, f"raw-{what}.npy"))
        timer.start()
        np.save(path, a)

    def rc_save(workdir, timer):
        import remote_codecs as rc

        obj = _make(what)
        _warm(workdir)
        path = fresh(os.path.join(workdir, f"rc-{what}.bundle"))
        timer.start()
        rc.save(obj, path)

    def pickle_save(workdir, timer):
        import cloudpickle

        obj = _make(what)
        path = fresh(os.path.join(workdir, f"p-{what}.pkl"))
        timer.start()
        with open(path, "wb") as f:
            f.write(cloudpickle.dumps(obj))

    def raw_load(workdir, timer):
        import numpy as np

        timer.start()
        np.load(os.path.join(workdir, "load-raw.npy"))

    def rc_load(workdir, timer):
        import remote_codecs as rc

        if what == "frame":
            import pandas  # noqa: F401  (imports are not what is measured)
        else:
            import torch  # noqa: F401
        _warm(workdir)
        timer.start()
        rc.load(os.path.join(workdir, f"load-{what}.bundle"))

    def pickle_load(workdir, timer):
        import cloudpickle

        if what == "frame":
            import pandas  # noqa: F401
        else:
            import torch  # noqa: F401
        timer.start()
        with open(os.path.join(workdir, f"load-{what}.pkl"), "rb") as f:
            cloudpickle.loads(f.read())

    return {
        f"raw_save_{what}": raw_save,
        f"rc_save_{what}": rc_save,
        f"rc_save_{what}_vs_pickle": rc_save,
        f"pickle_save_{what}": pickle_save,
        f"raw_load_{what}": raw_load,
        f"rc_load_{what}": rc_load,
        f"rc_load_{what}_vs_pickle": rc_load,
        f"pickle_load_{what}": pickle_load,
    }


globals().update(_cases("frame"))
globals().update(_cases("state"))
