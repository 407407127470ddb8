"""`agent`: choose one function and its arguments from a described list, answering in JSON or YAML.

One call invents a list of functions (as YAML) and several user requests that one of them serves.
Each request becomes an instruction; the function list and the answer format go in the row's system
prompt (`prompts/agent.system.j2`), as tool-using chat data is usually laid out. Keeping them out of
the instruction also keeps the novelty check on what differs between rows: the requests. The answer
must parse in the asked format into {function, params} naming a listed function, or it is dropped.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import Field

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import code_only, labelled_lines, load_structured
from instructflow.instructors.base import Instructor
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

_REQUEST_LINE = re.compile(r"^[ \t>#*_]*REQUEST\b", re.IGNORECASE | re.MULTILINE)


class AgentParams(CategoryParams):
    functions: int = Field(4, ge=2, le=12, description="functions described per call")
    yaml_share: float = Field(
        0.3, ge=0, le=1, description="share of answers asked for in YAML (else JSON)"
    )


@register
class Agent(Instructor):
    """Function selection and argument filling for tool-using assistants."""

    category = "agent"
    Params = AgentParams
    variables = frozenset({"count", "topic", "function_count"})
    params: AgentParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.system_template = self.load_template(
            f"{self.category}.system", frozenset({"functions", "fmt"})
        )

    def choose(self) -> dict[str, Any]:
        return {**super().choose(), "function_count": self.params.functions}

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        split = _REQUEST_LINE.search(reply)
        functions = _function_list(reply[: split.start()] if split else "")
        if not functions or not split:
            return []
        listing = yaml.safe_dump(functions, sort_keys=False, allow_unicode=True, width=100).strip()
        out = []
        for _, request in labelled_lines(reply[split.start() :], ["REQUEST"]):
            if not request:
                continue
            fmt = "yaml" if self.rng.random() < self.params.yaml_share else "json"
            tools = self.system_template.render(
                {**self.common_values(), "functions": listing, "fmt": fmt}
            )
            system = f"{self.system}\n\n{tools}" if self.system else tools
            meta = {"format": fmt, "functions": [f["name"] for f in functions]}
            cand = self.candidate(request, topic=values["topic"], system=system, meta=meta)
            cand.add_template(self.system_template.digest)  # the system prompt's own template
            out.append(cand)
        return out

    def parse_response(self, reply: str, candidate: Candidate) -> str | None:
        """The bare answer (fences removed) when it parses as {function, params} naming a listed
        function; otherwise None."""
        body = code_only(reply)
        value = load_structured(body, candidate.meta.get("format", "json"))
        if not isinstance(value, dict) or set(value) - {"function", "params"}:
            return None
        if value.get("function") not in candidate.meta.get("functions", [value.get("function")]):
            return None  # a function that was not offered
        ok = isinstance(value.get("function"), str) and isinstance(value.get("params", {}), dict)
        return body if ok and value["function"].strip() else None


def _function_list(text: str) -> list[dict[str, Any]] | None:
    """The FUNCTIONS section as a list of {name, description, params}, or None if it is unusable."""
    body = re.sub(
        r"^[ \t>#*_]*FUNCTIONS[*_]*[ \t]*:[ \t]*$",
        "",
        text.strip(),
        count=1,
        flags=re.IGNORECASE | re.MULTILINE,
    )
    body = re.sub(r"^[ \t]*```\w*[ \t]*$", "", body, flags=re.MULTILINE)
    try:
        value = yaml.safe_load(body)
    except (yaml.YAMLError, ValueError, RecursionError):
        return None
    if not isinstance(value, list) or not value:
        return None
    for item in value:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("name"), str)
            and isinstance(item.get("description"), str)
        ):
            return None
        if not isinstance(item.get("params") or {}, dict):
            return None
    return value
