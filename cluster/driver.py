"""The driver: validates a run, starts or joins Ray, steers the pipeline (quotas, stop), drains it.

The stage graph is declared in `cluster.graph`; the actors are created and observed in
`cluster.topology`. Every edge is a bounded `QueueActor`; puts block when a queue is full, so a slow
stage slows the ones before it instead of growing memory, and a put to an edge that is closed (its
category is done) drops its candidates instead of blocking.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from instructflow.actors.core.ledger import GIVEN_UP, SHUTDOWN, TARGET_MET
from instructflow.cluster.accounting import LossEstimator, Progress, Watchdog, caps, settle_lost
from instructflow.cluster.display import Display
from instructflow.cluster.epilogue import Spend, closing_lines
from instructflow.cluster.graph import GRAPH
from instructflow.cluster.output import OutputDir
from instructflow.cluster.quiet import prepare_ray
from instructflow.cluster.topology import (  # noqa: F401 - re-exported for callers of the driver
    RunError,
    Topology,
    actor_count,
    actor_name,
    build,
    finished_loops,
    resume_index,
    retire,
    retire_queue,
    snapshot,
    start,
    teardown,
    wait_ready,
)
from instructflow.config import Config, ConfigError

if TYPE_CHECKING:
    from instructflow.instructors.characters import Card

log = logging.getLogger(__name__)
NAMESPACE = "instructflow"


def preflight(config: Config) -> Counter[str]:
    """Everything that can be checked before Ray starts or a request is paid for: templates (with
    their declared variables), seed and topics files, the PII scrubber, the API key variable.

    Returns the PII found in the categories' input files (seed files), per entity.
    """
    from instructflow.actors.core.judge import JudgeChain
    from instructflow.instructors.registry import get_instructor
    from instructflow.instructors.teacher.topics import TopicsError, read_topics

    inputs_pii: Counter[str] = Counter()
    for name, params in config.categories.items():
        try:  # loads and checks templates, reads (and scrubs) seed files
            instructor = get_instructor(name)(params, prompts_dir=config.prompts_path, pii=config.pii)
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{config.source}: categories.{name}: {exc}") from None
        inputs_pii.update(instructor.inputs_scrubbed)
    if config.pii.enabled and config.pii.entities:
        from instructflow.instructors.pii import Scrubber

        try:
            Scrubber.from_config(config.pii)
        except ValueError as exc:
            raise ConfigError(f"{config.source}: {exc}") from None
    try:
        JudgeChain(config.judge.rules, config.judge.llm, config.prompts_path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{config.source}: judge.llm: {exc}") from None
    user_cards(config)  # a bad card file stops the run here, naming the file and the key
    topics = config.topics.file and config.resolve_path(config.topics.file)
    if topics and topics.exists():
        try:
            read_topics(topics, config.topics.avoid)
        except (TopicsError, OSError) as exc:
            raise ConfigError(f"{config.source}: topics.file: {exc}") from None
    teacher = config.teacher
    if teacher.kind == "openai" and teacher.api_key_env and not os.environ.get(teacher.api_key_env):
        raise ConfigError(
            f"teacher.api_key_env: the environment variable {teacher.api_key_env} is not set; "
            "export it with your API key (or set teacher.api_key_env: null for servers without keys)"
        )
    return inputs_pii


def user_cards(config: Config) -> list[Card]:
    """The cards of the user's folder (`characters.dir`), or none when it is not set."""
    from instructflow.instructors.characters import CardError, load_cards

    if not config.characters.dir:
        return []
    try:
        return load_cards(config.resolve_path(config.characters.dir))
    except CardError as exc:
        raise ConfigError(f"{config.source}: characters.dir: {exc}") from None


def load_cards_for_run(config: Config, out: OutputDir) -> list[Card]:
    """The cards the instructors may play: the user's, then the run's own (`<output>/characters/`,
    first brought up to date with the committed `character` rows, which a killed run may not have
    saved yet). A name in both keeps the user's card."""
    from instructflow.actors.core.cards import run_cards
    from instructflow.actors.core.storage import open_store
    from instructflow.instructors.characters import merge_cards

    save_run_cards(out)
    return merge_cards(user_cards(config), run_cards(open_store(out.uri)))


def save_run_cards(out: OutputDir) -> None:
    """Saves the committed `character` rows' cards that `<output>/characters/` lacks (see
    `actors.core.cards`); a failure is logged, never fatal: the rows hold every card."""
    from instructflow.actors.core.cards import sync_cards
    from instructflow.actors.core.storage import OutputError, open_store

    try:
        result = sync_cards(open_store(out.uri))
    except (OSError, OutputError) as exc:
        log.warning("could not save the character cards under %s/characters: %s", out.uri, exc)
        return
    for note in result.skipped:
        log.warning("character card not saved: %s", note)


def start_ray(address: str | None) -> bool:
    """Starts a local Ray or joins `address`; returns True when this process started it."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    from_env = bool(os.environ.get("RAY_ADDRESS"))
    if address is None and not from_env:
        address = choose_address(recorded_cluster(), answers)
    # "local" always starts a private Ray, even when a `ray start` cluster runs on this machine.
    started_here = address == "local" or (address is None and not from_env)
    new_cluster = address == "local" or (address is None and not from_env and recorded_cluster() is None)
    prepare_ray(starts_cluster=new_cluster)  # Ray's advice a user cannot act on stays off the screen
    ray.init(address=address, namespace=NAMESPACE, log_to_driver=True, logging_level=logging.WARNING)
    return started_here


def choose_address(recorded: str | None, alive: Callable[[str], bool]) -> str | None:
    """Where a run without `--address` goes: the cluster `ray start` last recorded on this machine
    if it still answers (None lets Ray join it), else a private local Ray. A recorded cluster that
    is gone (killed rather than `ray stop`-ped) would otherwise make Ray wait for it forever."""
    if recorded is None or alive(recorded):
        return None
    print(
        f"instructflow: nothing answers at {recorded}, the Ray cluster that `ray start` last recorded "
        "on this machine; starting a local Ray instead (pass --address to choose)",
        file=sys.stderr,
        flush=True,
    )
    return "local"


def recorded_cluster() -> str | None:
    """The address `ray.init()` would join on its own (Ray's record of the last `ray start`)."""
    try:
        from ray._private.services import find_bootstrap_address

        return find_bootstrap_address(None) or None
    except Exception:  # noqa: BLE001 - a private Ray helper: without it, leave the choice to Ray
        return None


def answers(address: str, timeout_s: float = 2.0) -> bool:
    """Whether something accepts TCP connections at `host:port`."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def teacher_url(config: Config) -> tuple[str, Any]:
    """Starts the embedded teacher if asked for, and creates the cluster-wide rate limiter for the
    endpoint here, so that it lives as long as the driver (a named actor dies with its creator).

    Returns the base URL and the limiter's handle, which the caller must hold until the run ends:
    Ray destroys a named actor as soon as no handle to it is left, and the first actor to ask for
    it would then create (and own) a new one, which dies for good when that actor is killed.
    """
    from instructflow.actors.limiter import teacher_gate

    if config.teacher.kind == "embedded":
        from instructflow.actors.teacher_serve import start_embedded_teacher

        base_url = start_embedded_teacher(config.teacher.embedded)
    else:
        base_url = config.teacher.base_url
    t = config.teacher
    return base_url, teacher_gate(base_url, t.model, t.limits, t.budget, scope=config.run_id)


def load_topics(config: Config, base_url: str, inputs_pii: Counter[str] | None = None) -> list[str]:
    """The run's topics (read, or generated and saved), scrubbed of PII when `pii.inputs` is on;
    what was found is added to `inputs_pii`."""
    if not config.topics.file:
        return []
    from instructflow.actors.teacher import make_teacher
    from instructflow.instructors.teacher.topics import load_or_generate_topics

    path = config.resolve_path(config.topics.file)
    teacher = make_teacher(config.teacher, base_url, scope=config.run_id)
    topics = asyncio.run(load_or_generate_topics(path, teacher, config.topics.count, config.topics.avoid))
    pii = config.pii
    if not (pii.enabled and pii.inputs and pii.entities):
        return topics
    from instructflow.instructors.pii import Scrubber, scrub_inputs

    kept, found = scrub_inputs(topics, Scrubber.from_config(pii))
    if inputs_pii is not None:
        inputs_pii.update(found)
    return kept


class _Signals:
    """First Ctrl-C/SIGTERM asks for a drain; a second one asks to stop at once."""

    def __init__(self) -> None:
        self.count = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1


def steer(config: Config, topo: Topology, display: Display, signals: _Signals) -> tuple[Progress, str]:
    """Runs the control loop until every category is settled (target met, or given up by the
    watchdog), the producers end, or a signal arrives."""
    replicas = {n: p.replicas for n, p in config.categories.items()}
    losses = LossEstimator()
    r = config.run
    stall_s = r.stall_timeout_s
    if config.teacher.mode == "batch":  # nothing moves while answers wait in batches (up to 24 h each)
        from instructflow.instructors.teacher.batch import longest_wait_s

        stall_s = max(stall_s, longest_wait_s(config.teacher.batch))
    consumes = {n: p.consumes() for n, p in config.categories.items() if p.consumes()}
    watchdog = Watchdog(stall_s, r.saturation_window, r.min_novel_share, consumes)
    given_up: dict[str, str] = {}
    stopped: set[str] = set()
    while True:
        progress = snapshot(config, topo)
        progress.given_up = dict(given_up)
        losses.update(progress)
        display.update(progress)
        fatal = next((o for o in progress.outcomes if o.startswith("fatal")), None)
        if fatal:
            return progress, fatal
        if progress.all_settled():
            return progress, end_reason(progress)
        if signals.count:
            return progress, "interrupted"
        for name, reason in watchdog.check(progress, time.monotonic()).items():
            given_up[name] = reason
            display.note(f"giving up {reason}")
        for name, replica_caps in caps(progress, replicas).items():
            if name in given_up or progress.done(name):
                if name not in stopped:
                    stopped.add(name)
                    retire(config, topo, name, GIVEN_UP if name in given_up else TARGET_MET)
            else:
                for a, (generate_cap, answer_cap) in zip(topo.instructors[name], replica_caps, strict=False):
                    a.steer.remote(generate_cap, answer_cap)
        if "budget" in progress.outcomes and progress.finishing == 0:
            return progress, "budget exhausted"
        ended, failure = finished_loops(topo, timeout=0.5)
        if failure:
            return progress, f"fatal: {failure}"
        if sum(name.startswith("instructor") for name in ended) == len(topo.all_instructors()):
            # A fresh snapshot: the loops may have ended, with their reason, after this tick's one.
            progress = snapshot(config, topo)
            progress.given_up = dict(given_up)
            return progress, why_producers_ended(progress)


def end_reason(progress: Progress) -> str:
    """"complete", or why some categories fell short ("incomplete: trivia: novelty saturated: ...")."""
    if progress.all_done():
        return "complete"
    return "incomplete: " + "; ".join(progress.given_up[c] for c in progress.targets if c in progress.given_up)


def why_producers_ended(progress: Progress) -> str:
    """The run's end reason once every instructor loop has returned."""
    fatal = next((o for o in progress.outcomes if o.startswith("fatal")), None)
    if fatal:  # e.g. a 401: the message names the API key variable to check
        return fatal
    if progress.all_settled():
        return end_reason(progress)
    # Every replica stops at its next request once the budget is spent; answers still queued then
    # can never be paid for.
    return "budget exhausted" if "budget" in progress.outcomes else "producers finished"


def drain(config: Config, topo: Topology, signals: _Signals, reason: str) -> None:
    """Stops producers, lets in-flight work reach the writer (bounded), then commits and closes.

    Edges close in the graph's drain order: each once every stage that feeds it has ended, so work
    already paid for moves on instead of being dropped at a closed door.
    """
    import ray

    for a in topo.all_instructors():
        a.stop_generating.remote()
    deadline = time.monotonic() + config.run.drain_timeout_s
    if reason in ("interrupted", "budget exhausted"):
        # Let what is already paid for reach the writer, unless asked twice or out of time. No new
        # call starts now, so instructions still waiting for an answer are parked: not waited for.
        while time.monotonic() < deadline and signals.count < 2:
            if snapshot(config, topo).finishing == 0:
                break
            time.sleep(0.2)
    for a in topo.all_instructors():
        a.stop.remote()
    _wait_for(topo, lambda name: name.startswith("instructor"), deadline)
    for edge in GRAPH.drain_order():
        if GRAPH.orphaned(edge):
            # Nobody consumes it any more (its instructors stopped): what it holds is dropped.
            for category in config.categories:
                retire(config, topo, category, SHUTDOWN)
            continue
        for queue in GRAPH.edge(edge).expand(config):
            ray.get(topo.queues[queue].close.remote(SHUTDOWN))
        consumers = set(GRAPH.consumers(edge))
        _wait_for(topo, lambda name, c=consumers: name.split(" ")[0] in c, max(deadline, time.monotonic() + 5))
    for queue in topo.queues:  # past the deadline (or behind a dead stage): nothing moves any more
        retire_queue(topo, queue, SHUTDOWN)
    try:
        ray.get(topo.writer.call.remote("close"))
    except ray.exceptions.RayTaskError as exc:
        # Closing flushes what is pending; when that fails (e.g. the disk is still full) the
        # committed parts are untouched. Say so in one line instead of a Ray traceback.
        cause = str(getattr(exc, "cause", None) or exc)
        if not reason.startswith("fatal"):
            raise RunError(f"writer failed while closing: {cause}") from None
        if cause not in reason:  # else the run already stops for this very failure
            log.warning("writer failed while closing: %s", cause)


def _usage(limiter: Any) -> dict[str, Any] | None:
    """The run's teacher usage as its rate limiter counted it, or None when it cannot be read."""
    import ray

    try:
        return ray.get(limiter.snapshot.remote(), timeout=10)
    except Exception:  # noqa: BLE001 - the closing lines fall back to the summary's token counts
        return None


def _wait_for(topo: Topology, which: Callable[[str], bool], deadline: float) -> None:
    """Waits (until `deadline`) for the loops whose names `which` selects to end."""
    while True:
        ended, _ = finished_loops(topo, timeout=0.2)
        pending = [n for n in topo.loops.values() if which(n) and n not in ended]
        if not pending or time.monotonic() >= deadline:
            return


def check_key(config: Config) -> None:
    """Asks the teacher's `/models` (free) whether it takes the key, before Ray and the actors start:
    a wrong key stops the run in a second, not after the start-up. Anything but a refusal (no such
    endpoint, unreachable, a 403 from a key restricted to some endpoints) is left to the run, whose
    client retries and names what fails."""
    from instructflow.cluster.probe import key_refused

    teacher = config.teacher
    if teacher.kind != "openai" or not teacher.api_key_env or not teacher.base_url:
        return
    if key_refused(teacher.base_url, teacher.api_key_env, timeout_s=min(teacher.timeout_s, 10.0)):
        raise RunError(
            f"the teacher at {teacher.base_url} rejected the API key (HTTP 401, asked at /models before "
            f"the run started); check the environment variable {teacher.api_key_env}"
        )


def run(config: Config, address: str | None = None, *, allow_config_change: bool = False) -> Progress:
    """Runs one generation job to completion (or drain) and returns the final progress."""
    import ray

    inputs_pii = preflight(config)
    check_key(config)
    out = OutputDir.open(config, allow_config_change=allow_config_change)
    display = Display(config, mode=config.run.display)
    display.note(f"run {config.run_id}: starting Ray and {actor_count(config)} actors")
    started_here = start_ray(address)
    topo, base_url = None, None
    try:
        base_url, limiter = teacher_url(config)  # `limiter` is held for the run (see teacher_url)
        topics = load_topics(config, base_url, inputs_pii)
        if inputs_pii:
            found = ", ".join(f"{e} {n}" for e, n in sorted(inputs_pii.items()))
            display.note(f"PII in topics and seed files ({config.pii.action}): {found}")
        topo = build(config, base_url, topics, out, cards=load_cards_for_run(config, out))
        topo.limiter = limiter
        wait_ready(config, topo)
        resumed = resume_index(topo)
        display.note(f"run {config.run_id} -> {out.uri}" + (f" (resuming: {resumed} rows committed)" if resumed else ""))
        display.restart_clock()
        start(topo)
        with _Signals() as signals:
            progress, reason = steer(config, topo, display, signals)
            display.note(f"stopping: {reason}")
            drain(config, topo, signals, reason)
        save_run_cards(out)  # this run's committed cards, for later runs to play
        final = snapshot(config, topo)
        final.given_up = progress.given_up
        final.inputs_scrubbed = inputs_pii
        settle_lost(final)
        display.finish(final, reason)
        if not reason.startswith("fatal"):
            display.closing(closing_lines(config, final, out.uri, Spend.of(_usage(limiter), final), reason))
        if reason.startswith("fatal"):
            raise RunError(reason.removeprefix("fatal: "))
        if reason.startswith("incomplete"):
            raise RunError(f"{reason}; every row accepted so far is committed")
        return final
    finally:
        teardown(config, topo, base_url)
        if started_here:
            ray.shutdown()
