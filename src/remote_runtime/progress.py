"""A live progress line for many jobs: completed, failed, stopped, running, pending.

The counts follow the futures' outcomes, which follow the job folders: a job whose
future returned is Completed in its folder, one that raised is Failed, one cancelled is
Stopped. Log lines streamed while the line is shown are written above it (the line is
cleared first and redrawn after).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .futures import Future

__all__ = ["ProgressBar", "progress", "write_above"]

_console = threading.RLock()
_active: list[ProgressBar] = []


def write_above(out: TextIO, text: str) -> None:
    """Write ``text`` to ``out``, above any progress line shown in place on a terminal."""
    with _console:
        shown = [bar for bar in _active if bar._tty and bar._last]
        for bar in shown:
            bar._clear()
        try:
            out.write(text)
            out.flush()
        except Exception:
            pass
        for bar in shown:
            bar._redraw()


class ProgressBar:
    """Shows ``[#####-----] 12/40 done: 10 completed, 1 failed, 1 stopped; 2 running,
    26 pending`` until every future is done (redrawn in place on a terminal, a line per
    change elsewhere). Holds no reference to a future once it is done."""

    def __init__(
        self,
        futures: Iterable[Future],
        file: TextIO | None = None,
        interval: float = 0.2,
        width: int = 30,
    ) -> None:
        self._pending: list[Future] = list(futures)
        self.total = len(self._pending)
        self.file = file or sys.stderr
        self.interval = interval
        self.width = width
        self._ended = {"completed": 0, "failed": 0, "stopped": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="remote-runtime-progress", daemon=True
        )
        self._last = ""
        self._tty = bool(getattr(self.file, "isatty", lambda: False)())

    def counts(self) -> dict[str, int]:
        """completed, failed, stopped (cancelled), running and pending jobs."""
        with self._lock:
            still = []
            running = pending = 0
            for f in self._pending:
                if f.done():
                    self._ended[_outcome(f)] += 1
                    continue
                still.append(f)
                if f.running():
                    running += 1
                else:
                    pending += 1
            self._pending = still
            return {**self._ended, "running": running, "pending": pending}

    def render(self) -> str:
        c = self.counts()
        done = c["completed"] + c["failed"] + c["stopped"]
        filled = int(self.width * done / (self.total or 1))
        bar = "#" * filled + "-" * (self.width - filled)
        return (
            f"[{bar}] {done}/{self.total} done: {c['completed']} completed, {c['failed']} failed, "
            f"{c['stopped']} stopped; {c['running']} running, {c['pending']} pending"
        )

    def _clear(self) -> None:
        self.file.write("\r\033[K")

    def _redraw(self) -> None:
        self.file.write("\r" + self._last)
        self.file.flush()

    def _draw(self, final: bool = False) -> None:
        line = self.render()
        with _console:
            if line == self._last and not final:
                return
            self._last = line
            try:
                if self._tty:
                    self.file.write("\r\033[K" + line + ("\n" if final else ""))
                else:
                    self.file.write(line + "\n")
                self.file.flush()
            except Exception:
                pass

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw()
            c = self.counts()
            if not c["running"] and not c["pending"]:
                break

    def start(self) -> ProgressBar:
        with _console:
            _active.append(self)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._draw(final=True)
        with _console:
            if self in _active:
                _active.remove(self)

    def __enter__(self) -> ProgressBar:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _outcome(future: Future) -> str:
    if future.cancelled():
        return "stopped"
    if getattr(future, "_lazy_outcome", False):  # re-attached: read the folder, decode nothing
        return {"Completed": "completed", "Stopped": "stopped"}.get(future.status(), "failed")
    try:
        return "failed" if future.exception(timeout=0) is not None else "completed"
    except Exception:
        return "failed"


def progress(futures: Iterable[Future], file: TextIO | None = None) -> list[Future]:
    """Show a live progress line until every future is done; return the futures.

    done = progress([ex.submit(train, fold) for fold in range(10)])
    """
    futures = list(futures)
    bar = ProgressBar(futures, file=file).start()
    try:
        while not all(f.done() for f in futures):
            time.sleep(0.05)
    finally:
        bar.stop()
    return futures
