"""The second round without Ray: a real `PartWriter` commits source rows while a second-round
category's feed (`core.feed`) and producer read them; the novelty stage and the watchdog's part."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

from instructflow.actors.core.feed import RowReader, SourceFeed
from instructflow.actors.core.ledger import Accounts
from instructflow.actors.core.novelty import NoveltyStage
from instructflow.actors.core.producer import Producer, ProducerStats
from instructflow.actors.core.queue import BatchQueue
from instructflow.actors.core.storage import open_store
from instructflow.actors.core.writer import PartWriter
from instructflow.cluster.accounting import Progress, Watchdog
from instructflow.instructors.derived import load_rows, marked_text
from instructflow.instructors.editing import proofread
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import get_instructor
from instructflow.instructors.teacher.api import Reply
from instructflow.prompts import PROMPTS_DIR

STORY = " ".join(f"Sentence number {i} tells of a quiet harbour, a small boat and a patient keeper." for i in range(6))


def source(i: int, category: str = "writing") -> Candidate:
    return Candidate(category=category, instruction=f"Write story number {i} about a harbour.",
                     response=f"Story {i}. {STORY}", model="m")


def editor(**options):
    cls = get_instructor("editor")
    return cls(cls.Params(count=5, **options), rng=random.Random(0))


def feed_over(root: Path, instr, replica: int = 0, replicas: int = 1) -> tuple[SourceFeed, RowReader]:
    feed = SourceFeed(instr, replica, replicas)
    return feed, RowReader(open_store(str(root)), feed.categories)


def test_rows_are_read_as_they_commit_each_part_once_and_each_source_handed_once(tmp_path: Path) -> None:
    writer = PartWriter(str(tmp_path), rows_per_part=2)
    writer.add([source(i) for i in range(3)] + [source(9, "general")])
    writer.flush()
    instr = editor()
    feed, read = feed_over(tmp_path, instr)
    assert feed.admit(read()) == 3 and feed.stats().seen == {"writing": 3}  # general is not a source
    writer.add([source(3)])  # pending: not committed, not seen
    assert feed.admit(read()) == 0
    writer.flush()
    assert feed.admit(read()) == 1
    handed = []
    while feed.reserve():
        handed.append(instr.choose()["source"].id)
    assert sorted(handed) == sorted(source(i).id for i in range(4))
    assert feed.stats().on_hand == 0 and feed.stats().handed == 4


def test_replicas_split_the_sources_without_overlap(tmp_path: Path) -> None:
    writer = PartWriter(str(tmp_path))
    writer.add([source(i) for i in range(40)])
    writer.flush()
    shares = []
    for replica in range(3):
        feed, read = feed_over(tmp_path, editor(), replica, 3)
        feed.admit(read())
        shares.append({r.id for r in feed.queue})
    assert sum(map(len, shares)) == 40 and len(set().union(*shares)) == 40
    assert all(shares)


def test_a_resumed_feed_skips_the_sources_committed_rows_used(tmp_path: Path) -> None:
    writer = PartWriter(str(tmp_path))
    sources = [source(i) for i in range(5)]
    writer.add(sources)
    derived = Candidate(category="editor", instruction="Fix this: story 1", response="Fixed.", source_id=sources[1].id)
    writer.add([derived])
    writer.close()
    feed, read = feed_over(tmp_path, editor())
    feed.admit(read())
    assert sources[1].id not in {r.id for r in feed.queue}
    assert feed.stats().on_hand == 4 and feed.stats().used == 1


def test_short_sources_are_not_offered(tmp_path: Path) -> None:
    writer = PartWriter(str(tmp_path))
    writer.add([source(1), Candidate(category="writing", instruction="Write a haiku.", response="Too short.")])
    writer.flush()
    feed, read = feed_over(tmp_path, editor())
    assert feed.admit(read()) == 1 and feed.stats().unusable == 1


def test_stylized_waits_for_a_card_and_takes_cards_from_committed_character_rows(tmp_path: Path) -> None:
    sources, references = load_rows(PROMPTS_DIR / "stylized_response.sources.yaml")
    cls = get_instructor("stylized_response")
    instr = cls(cls.Params(count=2), rng=random.Random(0))
    writer = PartWriter(str(tmp_path))
    writer.add([Candidate(category=s.category, instruction=s.instruction, response=s.response) for s in sources])
    writer.flush()
    feed, read = feed_over(tmp_path, instr)
    feed.admit(read())
    assert not feed.reserve() and "no character card" in (feed.stats().missing or "")
    card = references[0]
    writer.add([Candidate(category="character", instruction=card.instruction, response=card.response)])
    writer.flush()
    feed.admit(read())
    assert feed.reserve() and feed.stats().missing is None and instr.cards[0].name == "Mabel Thornbury"


def test_a_card_playing_category_plays_cards_committed_during_the_run_without_waiting(tmp_path: Path) -> None:
    """gtkm consumes nothing: its calls never wait for the feed (it invents a card while it has none),
    and a `character` row committed during the run becomes a card it plays in the same run."""
    _, references = load_rows(PROMPTS_DIR / "stylized_response.sources.yaml")
    cls = get_instructor("gtkm")
    instr = cls(cls.Params(count=2), rng=random.Random(0))
    writer = PartWriter(str(tmp_path))
    feed, read = feed_over(tmp_path, instr)
    assert feed.categories == {"character", "gtkm"}
    feed.admit(read())
    assert feed.reserve() and instr.choose()["card"] is None  # no card yet: the call invents one
    card = references[0]
    row = Candidate(category="character", instruction=card.instruction, response=card.response)
    writer.add([row, Candidate(category="general", instruction="Name a bird.", response="A wren.")])
    writer.flush()
    feed.admit(read())
    feed.admit(read())  # each part is read once: the card is not added twice
    assert [c.name for c in instr.cards] == ["Mabel Thornbury"]
    assert feed.reserve() and instr.choose()["card"]["name"] == "Mabel Thornbury"
    assert feed.stats().seen == {"character": 1} and feed.stats().missing is None


class Proofreader:
    """Answers an editor prompt as the stub teacher does; declines every `decline`-th call."""

    def __init__(self, decline: int = 0) -> None:
        self.calls = 0
        self.decline = decline

    async def chat(self, messages, *, category, call, max_tokens=None, temperature=None) -> Reply:
        self.calls += 1
        await asyncio.sleep(0.001)
        if self.decline and self.calls % self.decline == 0:
            return Reply("SKIP", 50, 1, "m")
        text = marked_text(messages[-1]["content"], "TEXT")
        return Reply(f"CORRECTED:\n{proofread(text)}\nEND CORRECTED", 50, 100, "m")


def test_the_producer_starts_on_the_first_committed_source_and_uses_each_once(tmp_path: Path) -> None:
    """No barrier: the editor makes rows while its source category is still committing, one call
    per source row; a declined source is rejected by name, in the books and the rejects log."""

    async def main():
        writer = PartWriter(str(tmp_path), rows_per_part=1)
        instr = editor()
        feed, read = feed_over(tmp_path, instr)
        feed.poll_s = 0.01
        novelty, answers, judged = BatchQueue(100), BatchQueue(100), BatchQueue(100)
        books, logged = Accounts(), []

        async def report(delta):
            books.record(delta)

        producer = Producer(
            instr, Proofreader(decline=3), emit_novelty=novelty.put_batch, take_answers=answers.take,
            emit_judge=judged.put_batch, report=report, concurrency=2, feed=(feed, read), log_rejects=logged.extend,
        )
        producer.steer(100, 0)
        task = asyncio.create_task(producer.run())
        seen_early = None
        for i in range(6):  # the source category commits one row at a time
            writer.add([source(i)])
            writer.flush()
            for _ in range(100):
                await asyncio.sleep(0.01)
                if producer.generated_total >= i + 1:
                    break
            if i == 2:
                seen_early = producer.generated_total
        producer.stop()
        await task
        return producer, books, logged, await novelty.get_batch(100, 0), seen_early

    producer, books, logged, rows, seen_early = asyncio.run(main())
    assert seen_early == 3  # rows made while later sources were not even written yet
    assert producer.generated_total == 6 and producer.failures == {}
    assert books.total.rejected == Counter({("editor", "instructor:declined"): 2})
    assert [reason for _, reason in logged] == ["declined", "declined"]
    assert len(rows) == 4 and len({c.source_id for c in rows}) == 4
    assert all(c.source_id in {source(i).id for i in range(6)} for c in rows)


def test_novelty_passes_second_round_rows_unembedded() -> None:
    async def encode(texts):
        raise AssertionError("a second-round row was embedded")

    stage = NoveltyStage(encode, admit=None)
    cand = Candidate(category="editor", instruction="Fix: text", response="Text.", source_id="ab")
    out = asyncio.run(stage.process([cand]))
    assert out.outputs == {"judge": [cand]} and cand.embedding is None


def starving(committed_sources: int, seen: int, on_hand: int = 0, settled: bool = True) -> Progress:
    p = Progress(targets={"writing": 4, "editor": 5})
    p.committed.update({"writing": committed_sources, "editor": 2})
    if not settled:
        p.committed["writing"] = min(committed_sources, 3)
    feed_stats = SourceFeed(editor()).stats()
    feed_stats.seen, feed_stats.on_hand, feed_stats.handed = {"writing": seen}, on_hand, seen - on_hand
    p.producers["editor"] = [ProducerStats("editor", 0, 0, 0, 0, {}, None, True, feed=feed_stats)]
    return p


def test_the_watchdog_ends_a_second_round_category_whose_sources_are_used_up() -> None:
    dog = Watchdog(stall_timeout_s=1e9, window=400, min_novel_share=0.02, consumes={"editor": ("writing",)})
    assert dog.check(starving(4, 3), 0) == {}  # a committed source row not read yet
    assert dog.check(starving(4, 4, on_hand=1), 0) == {}  # a source row still to use
    assert dog.check(starving(3, 3, settled=False), 0) == {}  # the source category still runs
    met = starving(4, 4)
    met.accepted["editor"] = 5  # the last rows pending in the writer: met, not exhausted
    assert dog.check(met, 0) == {}
    verdict = dog.check(starving(4, 4), 0)
    assert list(verdict) == ["editor"] and "editor: sources exhausted" in verdict["editor"]


def test_a_second_round_category_waiting_for_moving_sources_is_not_stalled() -> None:
    dog = Watchdog(stall_timeout_s=10, window=400, min_novel_share=0.02, consumes={"editor": ("writing",)})
    p = starving(1, 1, settled=False)
    assert "editor" not in dog.check(p, 0)
    p.committed["writing"] = 2  # the source moved: the clock restarts
    assert "editor" not in dog.check(p, 9) and "editor" not in dog.check(p, 18)
    assert "no progress" in dog.check(p, 30)["editor"]


def test_parts_of_schema_version_1_are_read_without_source_id(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    writer = PartWriter(str(tmp_path))
    writer.add([source(1), source(2)])
    writer.close()
    [part] = list((tmp_path / "data").glob("part-*.parquet"))
    table = pq.read_table(part)
    pq.write_table(table.drop_columns(["source_id", "messages"]), part)  # as version 1 wrote it
    feed, read = feed_over(tmp_path, editor())
    assert feed.admit(read()) == 2


def test_the_writer_keeps_one_row_per_source_and_category_also_after_a_reopen(tmp_path: Path) -> None:
    """The commit point's own guarantee: a source handed out twice (a replica restarted while its
    derived row was still with the judges) still gives one row."""
    made = [Candidate(category="stylized_response", instruction="Why?", response=f"Answer {i}.", system=f"card {i}",
                      source_id="00ab") for i in range(3)]
    writer = PartWriter(str(tmp_path))
    assert writer.add(made[:2])["duplicate_source"] == 1  # pending
    writer.close()
    reopened = PartWriter(str(tmp_path))
    assert reopened.skip_reason(made[2]) == "duplicate_source"  # committed
    other = Candidate(category="editor", instruction="Fix it.", response="Fixed.", source_id="00ab")
    assert reopened.skip_reason(other) is None  # another category may use the same source
