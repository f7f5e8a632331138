"""A live progress line for many jobs: pending, running, done and failed."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .futures import Future

__all__ = ["ProgressBar", "progress"]


class ProgressBar:
    """Shows ``[#####-----] 12/40 done, 2 running, 26 pending, 0 failed`` until every
    future is done (redrawn in place on a terminal, a line per change elsewhere)."""

    def __init__(
        self,
        futures: Iterable[Future],
        file: TextIO | None = None,
        interval: float = 0.2,
        width: int = 30,
    ) -> None:
        self.futures = list(futures)
        self.file = file or sys.stderr
        self.interval = interval
        self.width = width
        self._settled: dict[int, bool] = {}  # id(future) -> failed?
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="remote-runtime-progress", daemon=True
        )
        self._last = ""
        self._tty = bool(getattr(self.file, "isatty", lambda: False)())

    def counts(self) -> dict[str, int]:
        counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        for f in self.futures:
            if f.done():
                failed = self._settled.get(id(f))
                if failed is None:
                    failed = f.cancelled() or f.status() != "Completed"
                    self._settled[id(f)] = failed
                counts["failed" if failed else "done"] += 1
            elif f.running():
                counts["running"] += 1
            else:
                counts["pending"] += 1
        return counts

    def render(self) -> str:
        c = self.counts()
        total = len(self.futures) or 1
        filled = int(self.width * (c["done"] + c["failed"]) / total)
        bar = "#" * filled + "-" * (self.width - filled)
        return (
            f"[{bar}] {c['done'] + c['failed']}/{len(self.futures)} done: {c['done']} ok, "
            f"{c['failed']} failed; {c['running']} running, {c['pending']} pending"
        )

    def _draw(self, final: bool = False) -> None:
        line = self.render()
        if line == self._last and not final:
            return
        self._last = line
        if self._tty:
            self.file.write("\r" + line + ("\n" if final else ""))
        else:
            self.file.write(line + "\n")
        self.file.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw()
            if all(f.done() for f in self.futures):
                break

    def start(self) -> ProgressBar:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._draw(final=True)

    def __enter__(self) -> ProgressBar:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def progress(futures: Iterable[Future], file: TextIO | None = None) -> list[Future]:
    """Show a live progress line until every future is done; return the futures.

    done = progress([ex.submit(train, fold) for fold in range(10)])
    """
    bar = ProgressBar(futures, file=file).start()
    try:
        while not all(f.done() for f in bar.futures):
            time.sleep(0.05)
    finally:
        bar.stop()
    return bar.futures
