from __future__ import annotations

from instructflow.instructors.teacher.api import RequestFailed


def _teacher(scripted, recorded, falsify=None):
    return scripted(
        {
            "generate": recorded("counterfactual_contextual"),
            "falsify": falsify or recorded("counterfactual_contextual.falsify"),
        }
    )


def test_each_pair_is_emitted_once_with_both_halves(build, recorded, run, scripted) -> None:
    instr = build("counterfactual_contextual")
    teacher = _teacher(scripted, recorded)
    first = run(instr.generate(teacher))
    assert len(first) == 4 and teacher.count("falsify") == 2
    groups = {}
    for cand in first:
        groups.setdefault(cand.meta["group"], []).append(cand)
    for fake, truth in groups.values():
        assert fake.meta["counterfactual"] and not truth.meta["counterfactual"]
        assert fake.meta["question"] == truth.meta["question"]
        assert fake.instruction != truth.instruction
        assert fake.instruction.endswith(
            f"BEGININSTRUCTION\n{truth.meta['question']}\nENDINSTRUCTION"
        )
        assert "source: https://en.wikipedia.org/wiki/" in fake.instruction
    assert (
        "completed in 1904" in first[0].instruction and "completed in 1889" in first[1].instruction
    )
    assert run(instr.generate(teacher)) == []  # the same pairs again: already emitted


def test_unchanged_or_missing_rewrites_drop_the_pair(build, recorded, run, scripted) -> None:
    class Echo(scripted):  # "rewrites" each passage by sending it back unchanged (modulo case)
        async def chat(self, messages, **kw):
            if kw["call"] != "falsify":
                return await super().chat(messages, **kw)
            passage = messages[-1]["content"].split("Passage: ")[1].split("\n\nQuestion: ")[0]
            self.replies["falsify"] = f"REWRITTEN: {passage.upper()}"
            return await super().chat(messages, **kw)

    generate = recorded("counterfactual_contextual")
    assert run(build("counterfactual_contextual").generate(Echo({"generate": generate}))) == []
    for falsify in ["I cannot do that.", " ", "REWRITTEN:"]:
        teacher = scripted({"generate": generate, "falsify": falsify})
        assert run(build("counterfactual_contextual").generate(teacher)) == [], falsify


def test_a_failed_falsify_call_loses_only_its_pair(build, recorded, run, scripted) -> None:
    instr = build("counterfactual_contextual")

    class OneFails(scripted):
        async def chat(self, messages, **kw):
            if kw["call"] == "falsify" and "Eiffel" in messages[-1]["content"]:
                raise RequestFailed("http_500")
            return await super().chat(messages, **kw)

    teacher = OneFails(
        {
            "generate": recorded("counterfactual_contextual"),
            "falsify": recorded("counterfactual_contextual.falsify"),
        }
    )
    cands = run(instr.generate(teacher))
    assert len(cands) == 2 and all("waggle" in c.meta["passage"] for c in cands)
