"""Prompt templates: loaded from prompts/, checked against declared variables, rendered strictly."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

from instructflow.prompts import PROMPTS_DIR

# Variables every template may use without declaring them; the base instructor always supplies them.
COMMON_VARIABLES = frozenset({"language", "readability", "avoid_topics"})


class TemplateError(ValueError):
    """A template that cannot be used: missing file, syntax error, or undeclared/unused variables."""


_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,  # noqa: S701 - prompts are plain text, never HTML
)


@dataclass(frozen=True)
class PromptTemplate:
    """One checked template. `render` fails on any missing variable."""

    name: str
    path: Path
    source: str
    variables: frozenset[str]
    # Compiled once: compiling costs more than rendering, and a producer renders on every call.
    _compiled: jinja2.Template = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", _ENV.from_string(self.source))

    def __reduce__(self) -> tuple[Any, ...]:
        return (PromptTemplate, (self.name, self.path, self.source, self.variables))  # recompiled on arrival

    @cached_property
    def digest(self) -> str:
        """12-hex-digit sha256 of the template source; recorded on every row it produced."""
        return hashlib.sha256(self.source.encode()).hexdigest()[:12]

    def render(self, values: dict[str, Any]) -> str:
        missing = self.variables - values.keys()
        if missing:
            raise TemplateError(f"{self.path}: no value for {', '.join(sorted(missing))}")
        try:
            return self._compiled.render(**values).strip()
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{self.path}: {exc.message}") from None


def load_template(
    name: str, declared: frozenset[str], directory: Path = PROMPTS_DIR, override: Path | None = None
) -> PromptTemplate:
    """Loads `<name>.j2` and checks it uses exactly the declared variables.

    The file comes from `override` (the run's `run.prompts_dir`) when it has one of that name, else
    from `directory` (the packaged prompts). A variable the template uses but the instructor does
    not declare (or the other way round) is an error here, when the instructor loads, before any
    request is paid for.
    """
    path = directory / f"{name}.j2"
    if override is not None and (override / f"{name}.j2").is_file():
        path = override / f"{name}.j2"
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read template: {exc}") from None
    try:
        used = meta.find_undeclared_variables(_ENV.parse(source))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{path}:{exc.lineno}: template syntax error: {exc.message}") from None
    undeclared = used - declared - COMMON_VARIABLES
    if undeclared:
        raise TemplateError(
            f"{path}: uses undeclared variable(s) {', '.join(sorted(undeclared))}; "
            f"declared: {', '.join(sorted(declared)) or '(none)'}"
        )
    unused = declared - used
    if unused:
        raise TemplateError(f"{path}: declared variable(s) never used: {', '.join(sorted(unused))}")
    return PromptTemplate(name, path, source, frozenset(used))
