"""Progress for long work: a rich progress bar on a terminal, plain lines otherwise (pipes, CI=true)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


class RunProgress:
    """Steps done, the latest outer loss and steps per second for one run."""

    def __init__(self, label: str, total: int, enabled: bool = True) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self._bar: Any = None
        self._start = time.perf_counter()
        if enabled and interactive():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, info="")

    def update(self, step: int, loss: float | None) -> None:
        if not self.enabled:
            return
        rate = step / max(time.perf_counter() - self._start, 1e-9)
        info = f"loss {loss:.4g}  {rate:.1f} it/s" if loss is not None else f"{rate:.1f} it/s"
        if self._bar is not None:
            self._bar.update(self._task, completed=step, info=info)
        else:
            print(f"  [{self.label}] step {step}/{self.total}  {info}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
