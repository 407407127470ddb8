"""What the user sees while a run goes: a live table on a terminal, periodic lines in logs
(`ray job logs`, CI), and a summary table at the end."""

from __future__ import annotations

import sys
import time
from collections import Counter

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from instructflow.cluster.accounting import Cost, Progress
from instructflow.config import Config


def _rate(count: int, seconds: float) -> str:
    if seconds <= 0:
        return "-"
    rate = count / seconds
    return f"{rate:.1f}" if rate >= 1 or rate == 0 else f"{rate:.3f}"


class Display:
    """`mode`: auto (live on a terminal, plain otherwise), live, plain, or off."""

    def __init__(self, config: Config, mode: str = "auto", console: Console | None = None) -> None:
        if mode == "auto":
            mode = "live" if sys.stdout.isatty() else "plain"
        # Logs are not a terminal: give the summary table room instead of Rich's default 80 columns.
        self.console = console or Console(stderr=False, width=None if mode == "live" else 132)
        self.mode = mode
        self.config = config
        self.started = time.monotonic()
        self.last_plain = 0.0
        self.live: Live | None = None
        self.first_committed: dict[str, int] | None = None

    def restart_clock(self) -> None:
        """Rates count from here (the pipeline starting), not from Ray's start-up."""
        self.started = time.monotonic()

    def note(self, message: str) -> None:
        if self.mode != "off":
            self.console.print(f"[bold]instructflow[/bold] {message}", soft_wrap=True, highlight=False)

    def update(self, progress: Progress) -> None:
        if self.first_committed is None:
            self.first_committed = dict(progress.committed)  # rows from an earlier run (resume)
        if self.mode == "live":
            if self.live is None:
                self.live = Live(self.render(progress), console=self.console, refresh_per_second=4)
                self.live.start()
            else:
                self.live.update(self.render(progress))
        elif self.mode == "plain" and time.monotonic() - self.last_plain >= 5:
            self.last_plain = time.monotonic()
            self.console.print(self.line(progress), highlight=False, soft_wrap=True)

    def line(self, p: Progress) -> str:
        elapsed = time.monotonic() - self.started
        cats = " ".join(f"{c}={p.committed[c]}/{t}" for c, t in p.targets.items())
        return (
            f"[{elapsed:6.0f}s] {cats} | rows/s {_rate(self._new_rows(p), elapsed)} | "
            f"tokens {p.prompt_tokens}+{p.completion_tokens} | rejects {sum(p.rejects.values())} | "
            f"queued {sum(p.queue_depths.values())}"
        )

    def _new_committed(self, p: Progress) -> int:
        base = self.first_committed or {}
        return sum(p.committed[c] - base.get(c, 0) for c in p.targets)

    def _new_rows(self, p: Progress) -> int:
        base = self.first_committed or {}
        return sum(p.accepted[c] - base.get(c, 0) for c in p.targets)

    def render(self, p: Progress, title: str = "instructflow") -> Group:
        elapsed = time.monotonic() - self.started
        table = Table(title=f"{title} · run {self.config.run_id} · {elapsed:.0f}s", expand=False)
        # The books of this run: every generated candidate is accepted, rejected, dropped, lost, or
        # still in flight (the last column), so the row adds up.
        columns = ("category", "committed", "target", "generated", "accepted", "rejected", "dropped", "lost",
                   "in flight", "rows/s")
        for column in columns:
            table.add_column(column, justify="right" if column != "category" else "left")
        b = p.books
        for cat, target in p.targets.items():
            base = (self.first_committed or {}).get(cat, 0)
            dropped = sum(n for (c, _), n in b.dropped.items() if c == cat)
            name = f"{cat} (given up)" if cat in p.given_up else cat
            table.add_row(
                name, str(p.committed[cat]), str(target), str(p.generated[cat]), str(b.accepted[cat]),
                str(b.rejected_in(cat)), str(dropped), str(p.lost[cat]), str(p.in_flight(cat)),
                _rate(p.accepted[cat] - base, elapsed),
            )
        stats = Table.grid(padding=(0, 2))
        stats.add_row("tokens", f"prompt {p.prompt_tokens:,}  completion {p.completion_tokens:,}")
        stats.add_row("cost", Cost.of(p, self._new_committed(p)).line())
        stats.add_row("rows/s", _rate(self._new_rows(p), elapsed))
        stats.add_row("queues", "  ".join(f"{k} {v}" for k, v in p.queue_depths.items()))
        released = f" ({p.released:,} released: their answer made no row)" if p.released else ""
        stats.add_row("index", f"{p.vectors:,} vectors{released}")
        if p.books.scrubbed or p.inputs_scrubbed:
            stats.add_row("pii", self._pii(p))
        if p.rejects:
            stats.add_row("rejects", "  ".join(f"{k} {v}" for k, v in sorted(p.rejects.items())))
        if p.requests:
            calls = "  ".join(f"{k} {v}" for k, v in sorted(p.requests.items()))
            cut = f", cut at max_tokens {p.truncated}" if p.truncated else ""
            stats.add_row("teacher calls", f"{calls}  (retried {p.retries}{cut})")
        if p.batch:
            stats.add_row("batches", "  ".join(f"{k} {v}" for k, v in p.batch.items() if v))
        for reason in p.given_up.values():
            stats.add_row("given up", reason)
        if p.failures:
            stats.add_row("failed calls", "  ".join(f"{k} {v}" for k, v in sorted(p.failures.items())))
        return Group(table, stats)

    def _pii(self, p: Progress) -> str:
        """PII found per entity, in rows and in the inputs, and what was done with it."""
        rows: Counter[str] = Counter()
        for (_, entity), n in p.books.scrubbed.items():
            rows[entity] += n
        parts = [f"{label}: " + "  ".join(f"{e} {n}" for e, n in sorted(found.items()))
                 for label, found in (("rows", rows), ("inputs", p.inputs_scrubbed)) if found]
        return f"{' · '.join(parts)}  ({self.config.pii.action})"

    def finish(self, p: Progress, reason: str) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.mode == "off":
            return
        self.console.print(self.render(p, title=f"summary ({reason})"))

    def closing(self, lines: list[str]) -> None:
        """The last lines of a run, under the summary: where the data is, its cost, what to run next."""
        if self.mode == "off":
            return
        self.console.print()
        head, *rest = lines
        self.console.print(f"[bold]instructflow[/bold] {head}", highlight=False, soft_wrap=True)
        for line in rest:
            self.console.print(line, highlight=False, soft_wrap=True, markup=False)
