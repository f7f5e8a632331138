"""The main demo, on the embedded default: a local job root and the local backend.

Run it with `make demo`. Every call below runs as a job in another process; its
folder (function, arguments, results or exception, status, logs) is kept under a
temporary job root, which the demo prints.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

root = tempfile.mkdtemp(prefix="remote-demo-")
os.environ.setdefault("REMOTE_RUNTIME_S3_ROOT_URI", os.path.join(root, "jobs"))

import remote_codecs as rc  # noqa: E402
from remote_runtime import RemoteExecutor, get_future, list_futures, remote  # noqa: E402


@remote
def matrix_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.matmul(a, b)


@remote(job_name_prefix="divide")
def divide(x: float, y: float) -> float:
    print(f"dividing {x} by {y}")
    return x / y


def square(x: int) -> int:
    return x * x


def main() -> None:
    print(f"job root: {os.environ['REMOTE_RUNTIME_S3_ROOT_URI']}\n")

    print("== @remote: a value back ==")
    a = np.array([[1, 0], [0, 1]])
    b = np.array([1, 2])
    print("matrix_multiply ->", matrix_multiply(a, b))
    print("divide(10, 5) ->", divide(10, 5))

    print("\n== @remote: the exception back, with the remote traceback ==")
    try:
        divide(10, 0)
    except ZeroDivisionError as exc:
        print(f"caught {type(exc).__name__}: {exc}")
        print("\n".join(getattr(exc, "__notes__", []))[-200:])

    print("\n== RemoteExecutor: parallel jobs on warm workers ==")
    with RemoteExecutor(
        max_parallel_jobs=2, keep_alive_period_in_seconds=30, stream_logs=False
    ) as ex:
        futures = [ex.submit(square, i) for i in range(8)]
        print("results:", [f.result() for f in futures])
        name = futures[-1].job_name

    print("\n== re-attach by name, as a new process would ==")
    again = get_future(name)
    print(f"{name}: {again.status()} -> {again.result()}")
    print("jobs under the root:", len(list(list_futures())))

    print("\n== what a results bundle holds ==")
    folder = os.path.join(os.environ["REMOTE_RUNTIME_S3_ROOT_URI"], name)
    print("job folder:", sorted(os.listdir(folder)))
    one_file = os.path.join(folder, "results.bundle")  # a small value: one file
    if os.path.exists(one_file):
        with open(one_file, "rb") as f:
            print(rc.inspect(f.read()))
    else:  # a larger one: a bundle folder
        print(rc.inspect(os.path.join(folder, "results")))
    print(f"\nTry: remote-runtime --root {os.environ['REMOTE_RUNTIME_S3_ROOT_URI']} jobs list")


if __name__ == "__main__":
    main()
