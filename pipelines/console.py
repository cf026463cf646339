"""What `make run` shows while it works: a progress display per long stage on a terminal, plain
short lines elsewhere (CI, tests, a log file), and the time each stage took.

    console = RunConsole()
    with console.stage("ingest", total=len(days)) as stage:
        for day in days:
            ...
            stage.advance(f"ingested {day}")
    print(console.timing_table())

On a terminal (rich), a stage is one live line (spinner, bar when the stage knows its total, the
last step, elapsed time) that disappears when the stage ends: the summary printed after it is what
stays. Elsewhere each step is one plain line, as the summary is.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Stage:
    """One running stage: `advance(step)` reports a step done (plain: one line)."""

    def __init__(self, out: TextIO):
        self.out = out

    def advance(self, step: str) -> None:
        print(f"  {step}", file=self.out, flush=True)


class LiveStage(Stage):
    def __init__(self, progress, task):
        self.progress, self.task = progress, task

    def advance(self, step: str) -> None:
        self.progress.update(self.task, advance=1, step=step)


class RunConsole:
    """`make run`'s console: stages with progress, and their times. `live` None: a progress display
    only when `out` is a terminal."""

    def __init__(self, out: TextIO | None = None, live: bool | None = None):
        self.out = out or sys.stdout
        self.live = self.out.isatty() if live is None else live
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, total: int | None = None, title: str | None = None) -> Iterator[Stage]:
        """Time the stage `name` (its seconds add up if it runs again) and show its progress;
        `total`: how many `advance` calls it will make, when known; `title`: the plain line that
        opens it (default "<name> ...", "" for none)."""
        start = time.perf_counter()
        try:
            if not self.live:
                if title != "":
                    print(title or f"{name} ...", file=self.out, flush=True)
                yield Stage(self.out)
            else:
                with self._progress() as progress:
                    yield LiveStage(progress, progress.add_task(name, total=total, step=""))
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def _progress(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        # the console writes to the stream given now: a library swapping sys.stdout for a while
        # (e.g. to catch what it prints) does not take the display with it
        return Progress(SpinnerColumn(), TextColumn("[bold]{task.description:<16}"), BarColumn(bar_width=24),
                        MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[step]}"),
                        console=Console(file=self.out), transient=True)

    def timing_table(self) -> str:
        """The time of each stage, in the order they ran, and the total."""
        width = max([len(name) for name in self.seconds] + [len("total")])
        lines = ["time per stage:"]
        lines += [f"  {name:<{width}}  {format_seconds(s):>8}" for name, s in self.seconds.items()]
        lines.append(f"  {'total':<{width}}  {format_seconds(sum(self.seconds.values())):>8}")
        return "\n".join(lines)


def format_seconds(seconds: float) -> str:
    """`12.3 s` under a minute, else `m:ss`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"
