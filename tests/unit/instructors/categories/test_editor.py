"""`editor`: damage done in code (seeded by the source row), corrections checked against the original."""

from __future__ import annotations

import random

import pytest

from instructflow.config import ConfigError, parse_config
from instructflow.instructors.derived import REJECTED, load_rows
from instructflow.instructors.editing import DAMAGE, MECHANICAL, corrupt, proofread, similarity
from instructflow.instructors.registry import get_instructor
from instructflow.instructors.teacher.stub.replies import ReplyWriter
from instructflow.prompts import PROMPTS_DIR

SOURCES, _ = load_rows(PROMPTS_DIR / "editor.sources.yaml")


def editor(seed: int = 0):
    cls = get_instructor("editor")
    instr = cls(cls.Params(count=3), rng=random.Random(seed))
    instr.offer(SOURCES[0])
    return instr


def test_damage_is_seeded_by_the_row_mixes_kinds_and_a_proofreader_can_only_partly_undo_it() -> None:
    text = SOURCES[0].response
    damaged, kinds = corrupt(text, random.Random(SOURCES[0].id))
    assert (damaged, kinds) == corrupt(text, random.Random(SOURCES[0].id))
    assert kinds[0] in MECHANICAL and set(kinds) <= set(DAMAGE) and len(set(kinds)) >= 3
    assert 0.9 < similarity(damaged, text) < 1.0
    assert similarity(damaged, text) < similarity(proofread(damaged), text) < 1.0


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (lambda original, damaged: f"CORRECTED:\n{original}\nEND CORRECTED", None),
        (lambda original, damaged: f"CORRECTED:\n{damaged}\nEND CORRECTED", "not_corrected"),
        (lambda original, damaged: "CORRECTED:\nA wholly different and much shorter text.\nEND CORRECTED", "not_close"),
        (lambda original, damaged: "SKIP", "declined"),
    ],
)
def test_a_correction_is_kept_only_when_close_to_the_original_and_better_than_the_damage(reply, reason) -> None:
    instr = editor()
    values = instr.choose()
    [cand] = instr.parse(reply(SOURCES[0].response, values["text"]), values)
    assert cand.meta.get(REJECTED) == reason
    assert cand.source_id == SOURCES[0].id and cand.instruction.endswith(values["text"])
    assert cand.instruction.startswith(tuple(instr.params.requests))


def test_the_same_source_row_makes_the_same_instruction_in_any_replica() -> None:
    first, other = editor(seed=1), editor(seed=2)
    assert first.choose()["text"] == other.choose()["text"]
    a, b = editor(seed=1), editor(seed=2)
    reply = f"CORRECTED:\n{SOURCES[0].response}\nEND CORRECTED"
    va, vb = a.choose(), b.choose()
    assert a.parse(reply, va)[0].id == b.parse(reply, vb)[0].id


def test_a_reply_without_its_end_marker_yields_nothing() -> None:
    instr = editor()
    values = instr.choose()
    assert instr.parse(f"CORRECTED:\n{SOURCES[0].response}", values) == []


def test_the_stub_teacher_answers_an_editor_prompt_with_a_better_text() -> None:
    instr = editor()
    values = instr.choose()
    prompt = instr.template.render({**instr.common_values(), **values})
    reply, kind = ReplyWriter(PROMPTS_DIR).content("editor", "generate", prompt, random.Random(0),
                                                   wrong_format=False, duplicate=False)
    [cand] = instr.parse(reply, values)
    assert kind == "example" and REJECTED not in cand.meta


def test_a_run_with_no_source_category_fails_validation_naming_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("categories:\n  general: {count: 2}\n  editor: {count: 2}\n", "run.yaml")
    assert "run.yaml:3: categories.editor.source_categories: none of writing" in str(caught.value)
    ok = parse_config("categories:\n  writing: {count: 2}\n  editor: {count: 2}\n")
    assert ok.categories["editor"].consumes() == ("writing",)


def test_categories_that_consume_each_other_fail_validation() -> None:
    text = ("categories:\n  general: {count: 2}\n  editor: {count: 2, source_categories: [stylized_response]}\n"
            "  stylized_response: {count: 2, source_categories: [editor, general]}\n")
    with pytest.raises(ConfigError, match=r"categories.editor.source_categories: consumes its own rows "
                                          r"\(editor -> stylized_response -> editor\)"):
        parse_config(text)
