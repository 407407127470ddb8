"""`plan`: ReWOO-style plans. The row's system prompt (`prompts/plan.system.j2`) lists the tools and
the plan format, and the instruction is the question (so that the novelty check compares questions,
not the shared tool list). The response is a chain of "Plan:" lines and ":evidenceN: = Tool[input]"
steps ending in "Answer: :evidenceK:". A response is kept only if it parses: steps numbered in
order, each using a listed tool and only evidence defined before it, and an answer that names
defined evidence."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, model_validator

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import code_only
from instructflow.instructors.base import Instructor
from instructflow.instructors.parsing import numbered_items
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

_TOOLS = {
    "WebSearch": "searches the internet for the input query and returns result snippets with their links",
    "QAModel": "answers the question given as input, which may quote earlier evidence as context",
    "PageReader": "returns the plain text of the web pages whose links are given in the input, one per line",
    "LinkPicker": "extracts the links from the input text and returns them one per line",
    "Calculator": "evaluates the arithmetic expression given as input and returns the number",
    "MapLookup": "returns the address, coordinates and travel distances for the place named in the input",
    "EncyclopediaLookup": "returns the encyclopedia article that best matches the input term",
    "NewsSearch": "returns recent news headlines and summaries matching the input query",
    "Translator": "translates the input text into English",
}
_STEP = re.compile(r"^:evidence(\d+):\s*=\s*([A-Za-z]\w*)\s*\[(.*)\]$")
_PLAN = re.compile(r"^Plan\s*:\s*\S", re.IGNORECASE)
_ANSWER = re.compile(r"^(?:Final\s+)?Answer\s*:\s*(.*)$", re.IGNORECASE)
_REF = re.compile(r":evidence(\d+):")


class PlanParams(CategoryParams):
    tools: dict[str, str] = Field(
        default_factory=lambda: dict(_TOOLS), description="tool name -> what it does"
    )
    core_tools: list[str] = Field(
        default_factory=lambda: ["WebSearch", "QAModel"], description="always offered"
    )
    extra_tools: int = Field(3, ge=0, le=20, description="up to N more tools drawn per call")

    @model_validator(mode="after")
    def _core_known(self) -> PlanParams:
        unknown = set(self.core_tools) - set(self.tools)
        if unknown:
            raise ValueError(f"core_tools not described under tools: {', '.join(sorted(unknown))}")
        return self


def check_plan(text: str, tools: set[str]) -> bool:
    """True when `text` is a well-formed plan over `tools` (see the module docstring)."""
    lines = [line.strip() for line in code_only(text).splitlines() if line.strip()]
    answer = _ANSWER.match(lines[-1]) if lines else None
    if answer is None:
        return False
    plans = defined = 0
    for line in lines[:-1]:
        if _PLAN.match(line):
            plans += 1
            continue
        step = _STEP.match(line)
        if not step or int(step[1]) != defined + 1 or step[2] not in tools or plans != defined + 1:
            return False
        if any(not 1 <= int(ref) <= defined for ref in _REF.findall(step[3])):
            return False  # uses evidence that does not exist yet
        defined += 1
    refs = _REF.findall(answer[1])
    return defined > 0 and bool(refs) and all(1 <= int(ref) <= defined for ref in refs)


@register
class Plan(Instructor):
    """Tool-use plans with evidence variables, checked step by step."""

    category = "plan"
    Params = PlanParams
    variables = frozenset({"count", "topic", "tools"})
    params: PlanParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.system_template = self.load_template(f"{self.category}.system", frozenset({"tools"}))

    def choose(self) -> dict[str, Any]:
        core = list(self.params.core_tools)
        rest = [name for name in self.params.tools if name not in core]
        names = core + self.rng.sample(
            rest, self.rng.randint(0, min(self.params.extra_tools, len(rest)))
        )
        self.rng.shuffle(names)
        return {**super().choose(), "tools": [(n, self.params.tools[n]) for n in names]}

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        tools = self.system_template.render({**self.common_values(), "tools": values["tools"]})
        system = f"{self.system}\n\n{tools}" if self.system else tools
        meta = {"tools": [name for name, _ in values["tools"]]}
        out = [
            self.candidate(question, topic=values["topic"], system=system, meta=meta)
            for question in numbered_items(reply)
            if len(question.split()) >= 4
        ]
        for cand in out:  # the system prompt was rendered from a template of its own
            cand.add_template(self.system_template.digest)
        return out

    def parse_response(self, reply: str, candidate: Candidate) -> str | None:
        text = code_only(reply)
        return text if check_plan(text, set(candidate.meta.get("tools", []))) else None
