"""The stage graph, declared once: stages, the named edges (queues) between them, and replicas.

Everything about the pipeline's shape derives from `GRAPH`: which queues `topology.build` creates
and what it names them, which stage replicas it starts, the order in which a drain closes the
edges (an edge closes once every stage that feeds it has ended), the queue list in the display, and
the architecture diagram (`instructflow graph`, pasted into the README and checked by a test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from instructflow.config import Config

PER_CATEGORY = "{category}"


@dataclass(frozen=True)
class Edge:
    """A bounded queue. `name` may hold `{category}`: then there is one queue per category."""

    name: str
    capacity: Callable[[Config], int]
    note: str

    def expand(self, config: Config) -> list[str]:
        if PER_CATEGORY in self.name:
            return [self.name.replace(PER_CATEGORY, c) for c in config.categories]
        return [self.name]


@dataclass(frozen=True)
class StageDecl:
    """A stage: what it takes, where it may send, how many replicas run it."""

    name: str
    takes: str | None  # input edge; None for a source
    emits: tuple[str, ...]
    replicas: Callable[[Config], int]
    note: str
    source: bool = False  # instructors: they generate (and also consume their answer queue)
    also_takes: tuple[str, ...] = ()  # further inputs a source consumes


@dataclass(frozen=True)
class Feed:
    """Rows one stage reads back from what another committed to the output: no queue, nothing to
    create or drain (second-round categories read their sources this way, see `actors.core.feed`)."""

    name: str
    writer: str  # the stage that commits the rows
    reader: str  # the stage that reads them
    note: str


@dataclass(frozen=True)
class Graph:
    edges: tuple[Edge, ...]
    stages: tuple[StageDecl, ...]
    feeds: tuple[Feed, ...] = ()

    def edge(self, name: str) -> Edge:
        return next(e for e in self.edges if e.name == name)

    def stage(self, name: str) -> StageDecl:
        return next(s for s in self.stages if s.name == name)

    def queues(self, config: Config) -> dict[str, int]:
        """Every concrete queue name and its capacity."""
        return {q: e.capacity(config) for e in self.edges for q in e.expand(config)}

    def feeders(self, edge: str) -> list[str]:
        """Stages that put on `edge`."""
        return [s.name for s in self.stages if edge in s.emits]

    def consumers(self, edge: str) -> list[str]:
        return [s.name for s in self.stages if s.takes == edge or edge in s.also_takes]

    def orphaned(self, edge: str) -> bool:
        """Only sources consume it: once they stop, nothing ever will."""
        return all(self.stage(c).source for c in self.consumers(edge))

    def drain_order(self) -> list[str]:
        """Edges in the order a drain closes them. Sources stop first, so the edges only they
        consume are retired at once (a stage putting there must not wait for room forever); every
        other edge closes once all of its feeders have ended."""
        ended = {s.name for s in self.stages if s.source}
        order = [e.name for e in self.edges if self.orphaned(e.name)]
        pending = [e.name for e in self.edges if e.name not in order]
        while pending:
            ready = [e for e in pending if set(self.feeders(e)) <= ended]
            if not ready:
                raise ValueError(f"the stage graph has a cycle through {pending}")
            for e in ready:
                order.append(e)
                pending.remove(e)
                ended.update(s.name for s in self.stages if s.takes == e)
        return order

    def mermaid(self) -> str:
        """The graph as a Mermaid flowchart."""
        lines = ["flowchart LR"]
        for s in self.stages:
            lines.append(f"    {s.name}[\"{s.name}<br/><small>{s.note}</small>\"]")
        for e in self.edges:
            for f in self.feeders(e.name):
                for c in self.consumers(e.name):
                    lines.append(f"    {f} -- \"{e.name}\" --> {c}")
        for feed in self.feeds:
            lines.append(f"    {feed.writer} -. \"{feed.name}\" .-> {feed.reader}")
        return "\n".join(lines)


GRAPH = Graph(
    edges=(
        Edge("novelty", lambda c: c.queues.novelty, "generated instructions waiting for the novelty check"),
        Edge(f"answer:{PER_CATEGORY}", lambda c: c.queues.answer, "admitted instructions waiting for an answer"),
        Edge("judge", lambda c: c.queues.judge, "answered candidates waiting for the judges"),
        Edge("writer", lambda c: c.queues.writer, "judged rows waiting to be committed"),
    ),
    stages=(
        StageDecl(
            "instructor", None, ("novelty", "judge"), lambda c: sum(p.replicas for p in c.categories.values()),
            "one per category replica: generate, then answer", source=True, also_takes=(f"answer:{PER_CATEGORY}",),
        ),
        StageDecl("novelty", "novelty", (f"answer:{PER_CATEGORY}", "judge"), lambda c: c.novelty.embedders,
                  "embed, then admit through the gate"),
        StageDecl("judge", "judge", ("writer",), lambda c: c.judge.replicas, "rules, then the LLM judge"),
        StageDecl("writer", "writer", (), lambda c: 1, "Parquet parts + manifest"),
    ),
    feeds=(
        Feed("committed rows", "writer", "instructor",
             "second-round categories (stylized_response, editor) read their sources' rows, and card "
             "players (awareness, rp, gtkm) the character rows, as they commit"),
    ),
)
