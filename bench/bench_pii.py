"""Precision, recall and speed of the PII scrubber on the labelled sample.

    .venv/bin/python bench/bench_pii.py [--entities email phone ...] [--repeat 5]

Reads tests/data/pii/sample.jsonl (built by tests/data/pii/build_sample.py: short texts with
labelled spans, and hard negatives), finds PII with `instructors.pii.Scrubber`, and prints per
entity the true positives, false positives, false negatives, precision and recall. A found span
counts as a true positive when it overlaps a labelled span of the same entity (each labelled span
is matched at most once); `exact` says how many of those have exactly the labelled boundaries.

Speed: texts per second over the sample (short texts, ~45 characters), and rows per second for
judge-sized rows of ~2,000 characters (an instruction plus its response): ordinary rows (the stub
teacher's example replies in prompts/*.example.txt: prose, code, lists, numbers) and PII-dense rows
(the sample's texts joined: a digit run every ~90 characters, the worst case for phone numbers).
Both for the pattern entities alone and with person names. Results: docs/pii.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from instructflow.instructors.pii import ENTITIES, Finding, Scrubber

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "pii" / "sample.jsonl"
PATTERN_ENTITIES = [e for e in ENTITIES if e != "person"]


def load_sample(path: Path = SAMPLE) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    exact: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def evaluate(scrubber: Scrubber, records: list[dict]) -> tuple[dict[str, Score], list[str]]:
    """Scores per entity (over the scrubber's entities), and one line per mistake."""
    scores = {e: Score() for e in scrubber.entities}
    mistakes: list[str] = []
    found = scrubber.find_many([r["text"] for r in records])
    for record, findings in zip(records, found, strict=True):
        text = record["text"]
        gold = [s for s in record["spans"] if s["entity"] in scores]
        matched: set[int] = set()
        for f in findings:
            hit = _match(f, gold, matched)
            if hit is None:
                scores[f.entity].fp += 1
                mistakes.append(f"FP {f.entity:<11} {text[f.start:f.end]!r} in #{record['id']}: {text!r}")
                continue
            matched.add(hit)
            scores[f.entity].tp += 1
            scores[f.entity].exact += (f.start, f.end) == (gold[hit]["start"], gold[hit]["end"])
        for i, span in enumerate(gold):
            if i not in matched:
                scores[span["entity"]].fn += 1
                mistakes.append(f"FN {span['entity']:<11} {span['text']!r} in #{record['id']}: {text!r}")
    return scores, mistakes


def _match(f: Finding, gold: list[dict], matched: set[int]) -> int | None:
    for i, span in enumerate(gold):
        if i not in matched and span["entity"] == f.entity and f.start < span["end"] and span["start"] < f.end:
            return i
    return None


def _sum(scores: Iterable[Score]) -> Score:
    total = Score()
    for s in scores:
        total.tp, total.fp, total.fn, total.exact = total.tp + s.tp, total.fp + s.fp, total.fn + s.fn, total.exact + s.exact
    return total


def throughput(scrubber: Scrubber, texts: list[str], repeat: int) -> float:
    """Texts per second, `find_many` over all of `texts`, best of `repeat` rounds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        scrubber.find_many(texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def rows_of(texts: list[str], chars: int = 2000) -> list[str]:
    """The texts joined into rows of about `chars` characters."""
    rows, row = [], ""
    for text in texts:
        row = f"{row}\n{text}" if row else text
        if len(row) >= chars:
            rows.append(row)
            row = ""
    return rows


def report(name: str, scrubber: Scrubber, records: list[dict], repeat: int, show: bool) -> None:
    scores, mistakes = evaluate(scrubber, records)
    total = _sum(scores.values())
    print(f"\n{name}\n{'entity':<12} {'spans':>5} {'tp':>4} {'fp':>4} {'fn':>4} {'exact':>5} {'precision':>9} {'recall':>7}")
    for entity, s in scores.items():
        print(f"{entity:<12} {s.tp + s.fn:>5} {s.tp:>4} {s.fp:>4} {s.fn:>4} {s.exact:>5} {s.precision:>9.3f} {s.recall:>7.3f}")
    print(f"{'all':<12} {total.tp + total.fn:>5} {total.tp:>4} {total.fp:>4} {total.fn:>4} {total.exact:>5} "
          f"{total.precision:>9.3f} {total.recall:>7.3f}")
    for split in ("tuned", "held_out"):
        part = _sum(evaluate(scrubber, [r for r in records if r["split"] == split])[0].values())
        print(f"  {split:<10} spans {part.tp + part.fn:>3}  tp {part.tp:>3}  fp {part.fp:>2}  fn {part.fn:>2}  "
              f"precision {part.precision:.3f}  recall {part.recall:.3f}")
    texts = [r["text"] for r in records]
    ordinary = rows_of([p.read_text(encoding="utf-8") for p in sorted((ROOT / "prompts").glob("*.example.txt"))] * 4)
    print(f"speed: {throughput(scrubber, texts, repeat):,.0f} texts/s (sample, ~{sum(map(len, texts)) // len(texts)} chars); "
          f"~2,000-char rows: {throughput(scrubber, ordinary, repeat):,.1f} rows/s ordinary, "
          f"{throughput(scrubber, rows_of(texts * 10), repeat):,.1f} rows/s PII-dense")
    if show:
        print("\n".join(mistakes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", nargs="+", choices=list(ENTITIES), help="default: patterns, then with person")
    parser.add_argument("--repeat", type=int, default=5, help="timing rounds (best is kept)")
    parser.add_argument("--mistakes", action="store_true", help="print every false positive and negative")
    args = parser.parse_args()
    records = load_sample()
    spans = Counter(s["entity"] for r in records for s in r["spans"])
    negatives = sum(r["kind"] == "negative" for r in records)
    held_out = sum(r["split"] == "held_out" for r in records)
    print(f"sample: {len(records)} texts ({negatives} hard negatives; {held_out} held out), spans: "
          + ", ".join(f"{e} {spans[e]}" for e in ENTITIES))
    configs = [("chosen entities", args.entities)] if args.entities else [
        ("pattern entities (the default)", PATTERN_ENTITIES), ("with person", list(ENTITIES))]
    for name, entities in configs:
        started = time.perf_counter()
        scrubber = Scrubber(entities, "mask", ["US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"])
        print(f"\n({name}: scrubber ready in {time.perf_counter() - started:.1f}s)", end="")
        report(name, scrubber, records, args.repeat, args.mistakes)


if __name__ == "__main__":
    main()
