"""Reading runs and reference sets, and what the report's JSON and CLI say about them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from instructflow.cluster.cli import main
from instructflow.report.build import embed, write_report
from instructflow.report.data import ReportError, read_reference, read_run
from tests.unit.report.conftest import Built
from tests.unit.report.runs import CATEGORIES, make_run, write_seed_tasks


def write_lines(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_reference_layouts_become_instruction_response_pairs(tmp_path: Path) -> None:
    seed = write_lines(tmp_path / "seed_tasks.jsonl", [
        {"instruction": "Sort these.", "instances": [{"input": "3 1 2", "output": "1 2 3"}, {"input": "b a", "output": "a b"}]},
        {"instruction": "Say hi.", "instances": [{"input": "", "output": "Hi."}]},
    ])
    ds = read_reference(str(seed))
    assert ds.instruction == ["Sort these.\n\n3 1 2", "Say hi."] and ds.response == ["1 2 3", "Hi."]
    assert ds.category == ["seed_tasks", "seed_tasks"] and ds.label == "seed_tasks.jsonl"
    mixed = write_lines(tmp_path / "mixed.jsonl", [
        {"instruction": "Add.", "input": "2+2", "output": "4"},  # Alpaca
        {"instruction": "Name a colour.", "response": "Blue.", "category": "trivia"},  # airoboros
        {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}]},
        {"messages": [{"role": "user", "content": "U?"}, {"role": "assistant", "content": "V."}]},
        {"prompt": "P?", "completion": "C."},
    ])
    ds = read_reference(str(mixed))
    assert list(zip(ds.instruction, ds.response, strict=True)) == [
        ("Add.\n\n2+2", "4"), ("Name a colour.", "Blue."), ("Q?", "A."), ("U?", "V."), ("P?", "C."),
    ]
    assert ds.category == ["mixed", "trivia", "mixed", "mixed", "mixed"]


def test_a_bad_reference_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "ref.jsonl"
    bad.write_text('{"instruction": "a", "response": "b"}\n{"text": "no pair"}\n')
    with pytest.raises(ReportError, match=r"ref.jsonl:2: no instruction/response fields found \(keys: \['text'\]\)"):
        read_reference(str(bad))
    bad.write_text('{"instruction": "a", "response": "b"}\n\n{not json\n')
    with pytest.raises(ReportError, match=r"ref.jsonl:3: not a JSON object"):
        read_reference(str(bad))


def test_a_run_is_read_in_manifest_order_with_its_side_files(tmp_path: Path) -> None:
    made = make_run(tmp_path, rows=120, clusters=(3,))
    run, facts = read_run(str(tmp_path))
    assert run.instruction == [c.instruction for c in made["candidates"]]
    assert run.vectors.shape == (120, 384) and run.vector_rows.tolist() == list(range(120))
    assert run.vectors[5] == pytest.approx(made["candidates"][5].embedding)
    assert facts.run_id == "synthetic01" and facts.targets == made["targets"] and facts.threshold == 0.9
    assert facts.judge_threshold == 6.0 and set(facts.prices) == {"gpt-4o-mini"}
    by_reason: dict[str, int] = {}
    for (reason, _), n in facts.rejects.items():
        by_reason[reason] = by_reason.get(reason, 0) + n
    assert by_reason == made["rejects"]
    with pytest.raises(ReportError, match="manifest.jsonl: not found"):
        read_run(str(tmp_path / "nothing-here"))


def test_figures_json_holds_the_numbers_behind_the_plots(built_report: Built) -> None:
    made, report = built_report.made, built_report.report
    document = json.loads(report.figures_json.read_text())
    figures = {f["id"]: f["data"] for f in document["figures"]}
    assert sorted(p.name for p in report.images) == sorted(f"{i}.png" for i in figures)
    assert figures["rows_per_category"]["run"] == {c: 50 for c in CATEGORIES}
    assert figures["rows_per_category"]["reference"] == {"seed_tasks": 30}
    clusters = figures["duplicate_clusters"]
    assert [c["size"] for c in clusters["largest"]] == [6, 4, 3] and clusters["rows_in_clusters"] == 13
    candidates = made["candidates"]
    cost = sum(c.prompt_tokens * 0.00015 + c.completion_tokens * 0.0006 for c in candidates) / 1000
    assert figures["tokens_cost"]["total_cost_usd"] == pytest.approx(cost)
    assert figures["judge_scores"]["rows_scored"] == 200 and figures["judge_scores"]["threshold"] == 6.0
    assert figures["rejects"]["total"] == sum(made["rejects"].values())
    series = figures["nearest_neighbour"]["series"]
    assert series["run synthetic01: nearest other row"]["at_or_above_threshold"] == 13
    assert sum(series["run synthetic01: nearest other row"]["counts"]) == 200
    assert sum(series["seed_tasks.jsonl: nearest other row"]["counts"]) == 30
    assert set(figures["distinct_n"]["groups"]) == {
        *CATEGORIES, "run synthetic01: all", "seed_tasks.jsonl: all", "run synthetic01: 30 random rows"
    }
    points = figures["projection"]["points"]
    assert len(points) == 230 and {p[3] for p in points} == {"run", "reference"}
    assert document["summary"]["rows"] == {"run synthetic01": 200, "seed_tasks.jsonl": 30}


def test_what_is_missing_is_said_on_the_page(tmp_path: Path) -> None:
    make_run(tmp_path / "run", rows=40, clusters=(), scored=False)
    (tmp_path / "run" / "config.effective.yaml").write_text("novelty: {threshold: 0.95}\n")  # no judge, no prices
    (tmp_path / "run" / "rejects.jsonl").unlink()
    reference = write_seed_tasks(tmp_path / "seed_tasks.jsonl", tasks=12)
    report = write_report(str(tmp_path / "run"), compare=str(reference), embed_compare=False)
    page = report.page.read_text()
    assert any("no embeddings, not embedded" in n for n in report.notes)
    for expected in ("No prices in teacher.budget.prices", "No rejects log", "at or above 0.95", "no judge-score plot"):
        assert any(expected in n for n in report.notes), expected
        assert expected in page
    ids = [f["id"] for f in json.loads(report.figures_json.read_text())["figures"]]
    assert "judge_scores" not in ids and "rejects" not in ids and "duplicate_clusters" not in ids


def test_a_reference_that_cannot_be_embedded_keeps_its_other_measures(tmp_path: Path) -> None:
    ds = read_reference(str(write_seed_tasks(tmp_path / "seed.jsonl", tasks=3)))
    embed(ds, "no-such-model")
    assert ds.vectors is None and "not one instructflow ships" in ds.vectors_note


def test_the_cli_writes_the_report_or_names_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_run(tmp_path / "run", rows=30, clusters=(2,))
    assert main(["report", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "run" / "report" / "index.html")
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "manifest.jsonl: not found" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "run"), "--threshold", "1.5"]) == 2
    assert main(["report", "s3://bucket/run"]) == 2  # refused before anything is read
    assert "name a local folder for the report with --to" in capsys.readouterr().err


def test_the_novelty_model_embeds_a_reference_set(tmp_path: Path) -> None:
    ds = read_reference(str(write_seed_tasks(tmp_path / "seed.jsonl", tasks=4)))
    embed(ds, "all-MiniLM-L6-v2")
    assert ds.vectors.shape == (4, 384) and ds.vector_rows.tolist() == [0, 1, 2, 3]
    assert np.linalg.norm(ds.vectors, axis=1) == pytest.approx(np.ones(4), abs=1e-3)
