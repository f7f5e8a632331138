"""Save and load a float64 array (512 MiB): remote_codecs vs np.save/np.load vs cloudpickle.

Speed ratio = baseline time / our time (>= 1 means we are faster). Targets (issue 14):
save and load >= 0.9x np.save/np.load (issue 2: >= 3x cloudpickle.dumps + write); peak
RSS growth <= 1.1x the payload on load, ~0 on save. BENCH_ARRAY_BYTES sets the size.

Every save writes a new path (the previous repeat's output is removed before the timer
starts), so no case pays for freeing an older file. ``hash_1_thread`` and
``hash_2_threads`` time BLAKE3 of the array alone: every save and load hashes every
byte, so their ratios against np.save/np.load bound what any save or load can reach. ``rc_audit`` times what a load checks before decoding
anything (manifest parse, signature, codec and version audit, every file's kind and
size): its ratio against ``rc_load`` must stay >= 50 (the audit under 2% of a load).
"""

from __future__ import annotations

import os

from harness import Case, at_least, fresh

N = int(os.environ.get("BENCH_ARRAY_BYTES", 512 << 20)) // 8
PAYLOAD = N * 8
SIZE = f"{PAYLOAD / 2**20:,.0f} MiB" if PAYLOAD < 1 << 30 else f"{PAYLOAD / 2**30:g} GiB"

CASES = [
    Case("np_save", "save", label="np.save"),
    Case(
        "rc_save",
        "save",
        baseline="np_save",
        payload_bytes=PAYLOAD,
        target=at_least(0.9),
        label=f"save a {SIZE} array (local folder)",
    ),
    Case("pickle_save", "save", payload_bytes=PAYLOAD, label="cloudpickle.dumps + write"),
    Case(
        "rc_save_vs_pickle",
        "save",
        baseline="pickle_save",
        payload_bytes=PAYLOAD,
        target=at_least(3.0),
        label=f"save a {SIZE} array vs cloudpickle",
    ),
    Case("np_load", "load", payload_bytes=PAYLOAD, label="np.load"),
    Case(
        "rc_load",
        "load",
        baseline="np_load",
        payload_bytes=PAYLOAD,
        target=at_least(0.9),
        label=f"load a {SIZE} array (local folder)",
    ),
    Case("pickle_load", "load", payload_bytes=PAYLOAD, label="read + cloudpickle.loads"),
    Case(
        "rc_load_vs_pickle",
        "load",
        baseline="pickle_load",
        payload_bytes=PAYLOAD,
        target=at_least(3.0),
        label=f"load a {SIZE} array vs cloudpickle",
    ),
    Case("rc_audit", "load", baseline="rc_load", target=at_least(50.0)),
    Case(
        "hash_1_thread",
        "hash",
        baseline="np_save",
        label=f"BLAKE3 of the {SIZE} alone, one thread",
    ),
    Case("hash_1_thread_vs_load", "hash", baseline="np_load"),
    Case(
        "hash_2_threads",
        "hash",
        baseline="np_save",
        label=f"BLAKE3 of the {SIZE} alone, two threads",
    ),
]


def _array():
    import numpy as np

    a = np.arange(N, dtype=np.float64)
    a *= 1.000001
    return a


def setup(workdir: str) -> None:
    import cloudpickle
    import numpy as np

    import remote_codecs as rc

    a = _array()
    np.save(os.path.join(workdir, "load.npy"), a)
    rc.save(a, os.path.join(workdir, "load.bundle"))
    with open(os.path.join(workdir, "load.pkl"), "wb") as f:
        f.write(cloudpickle.dumps(a))


WARM = 300_000  # float64s: over 1 MiB, so the hash thread and its imports start here


def _warm(workdir):
    """Pay the one-time imports (the numpy codec, the hash thread) before timing."""
    import numpy as np

    import remote_codecs as rc

    rc.load(
        rc.save(np.zeros(WARM), os.path.join(workdir, f"warm-{os.getpid()}"))
        and os.path.join(workdir, f"warm-{os.getpid()}")
    )


def np_save(workdir, timer):
    import numpy as np

    a = _array()
    path = fresh(os.path.join(workdir, "np.npy"))
    timer.start()
    np.save(path, a)


def rc_save(workdir, timer):
    import remote_codecs as rc

    a = _array()
    _warm(workdir)
    path = fresh(os.path.join(workdir, "rc.bundle"))
    timer.start()
    rc.save(a, path)


rc_save_vs_pickle = rc_save


def pickle_save(workdir, timer):
    import cloudpickle

    a = _array()
    path = fresh(os.path.join(workdir, "a.pkl"))
    timer.start()
    with open(path, "wb") as f:
        f.write(cloudpickle.dumps(a))


def np_load(workdir, timer):
    import numpy as np

    timer.start()
    np.load(os.path.join(workdir, "load.npy"))


def rc_load(workdir, timer):
    import remote_codecs as rc

    _warm(workdir)
    timer.start()
    rc.load(os.path.join(workdir, "load.bundle"))


rc_load_vs_pickle = rc_load


def rc_audit(workdir, timer):
    from remote_codecs.api import default_registry
    from remote_codecs.bundle import BundleReader
    from remote_codecs.storage import FolderSource

    _warm(workdir)
    path = os.path.join(workdir, "load.bundle")
    timer.start()
    source = FolderSource(None, path, path)
    try:
        BundleReader(source, default_registry())
    finally:
        source.close()


def pickle_load(workdir, timer):
    import cloudpickle

    timer.start()
    with open(os.path.join(workdir, "load.pkl"), "rb") as f:
        cloudpickle.loads(f.read())


def _hash(threads):
    def case(workdir, timer):
        import blake3

        a = _array()
        timer.start()
        blake3.blake3(memoryview(a).cast("B"), max_threads=threads).digest()

    return case


hash_1_thread = hash_1_thread_vs_load = _hash(1)
hash_2_threads = _hash(2)
