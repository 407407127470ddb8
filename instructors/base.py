"""The instructor plugin shape: a typed `Params` block, a template, `choose` and `parse`.

A category is one module that subclasses `Instructor` (or `TaskList`, for the common "numbered list
of requests about a topic" shape), declares the variables its template uses, adds its own to the
default `choose` (count and topic), and turns the teacher's reply into candidates in `parse`. Categories whose
answers need a second call either rely on the default (the instruction itself is sent to the teacher,
with the category's system prompt) or declare `response_variables` and ship
`prompts/<category>.response.j2`. Multi-stage categories override `generate` or `respond`.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from instructflow.config import Pii
from instructflow.config.params import CategoryParams
from instructflow.instructors.characters import Card
from instructflow.instructors.parsing import numbered_items, whole_items
from instructflow.instructors.record import Candidate
from instructflow.instructors.render import PromptTemplate, load_template
from instructflow.instructors.teacher.api import Reply, Teacher
from instructflow.instructors.truncation import ReplyTruncated, ask_whole

if TYPE_CHECKING:
    from instructflow.instructors.derived import SourceRow

# What a template is given as its topic when the run has no topics: a neutral phrase, not a topic.
NO_TOPIC = "any subject you like"


class Instructor:
    """Base class of every category. Subclasses set the class attributes and implement
    `choose` and `parse`; the runner calls `generate` and `respond`."""

    category: ClassVar[str]
    Params: ClassVar[type[CategoryParams]] = CategoryParams
    variables: ClassVar[frozenset[str]] = frozenset()
    response_variables: ClassVar[frozenset[str] | None] = None
    default_system: ClassVar[str | None] = None
    skip_prompt_formatting: ClassVar[bool] = False

    def __init__(
        self,
        params: CategoryParams,
        *,
        topics: list[str] | None = None,
        avoid_topics: list[str] | None = None,
        rng: random.Random | None = None,
        prompts_dir: Path | None = None,
        pii: Pii | None = None,
        cards: list[Card] | None = None,
    ) -> None:
        """`cards`: the character cards the run can play (the user's folder and the run's own
        `<output>/characters/`, loaded by the driver); categories that speak in character draw on them."""
        self.params = params
        self.cards: list[Card] = list(cards or [])
        self.pii = pii if pii is not None and pii.enabled and pii.inputs and pii.entities else None
        self.inputs_scrubbed: Counter[str] = Counter()  # PII found in `clean_inputs`, per entity
        self.topics = list(topics or [])
        self.avoid_topics = list(avoid_topics or [])
        self.rng = rng or random.Random()
        self.prompts_dir = prompts_dir
        self.template: PromptTemplate = self.load_template(self.category, self.variables)
        self.response_template: PromptTemplate | None = None
        if self.response_variables is not None:
            self.response_template = self.load_template(f"{self.category}.response", self.response_variables)

    def load_template(self, name: str, declared: frozenset[str]) -> PromptTemplate:
        """A checked template, from the run's prompts directory when it overrides this one."""
        return load_template(name, declared, override=self.prompts_dir)

    # -- the verbs a category implements -------------------------------------------------------
    def choose(self) -> dict[str, Any]:
        """Picks the template variables for one generating call (use `self.rng`). The default asks
        for `batch_size` items about a drawn topic; categories add their own variables to it."""
        return {"count": self.params.batch_size, "topic": self.topic()}

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        """Turns one generating reply into candidates; drops what it cannot read, never raises."""
        raise NotImplementedError

    def response_values(self, candidate: Candidate) -> dict[str, Any]:
        """Variables for `prompts/<category>.response.j2` (only with `response_variables`)."""
        return {"instruction": candidate.instruction}

    def parse_response(self, reply: str, candidate: Candidate) -> str | None:
        """The response text from an answer reply, or None to drop the candidate."""
        text = reply.strip()
        return text or None

    def grammar(self, call: str, values: dict[str, Any]) -> str | None:
        """The GBNF shape of a call's reply (`instructors.grammar`), built from the call's template
        values (`generate`: `choose`'s; `respond`: `response_values`'), or None for free text. The
        client sends it only where `teacher.grammar` says."""
        return None

    # -- committed rows read while the run goes (`actors.core.feed`) -----------------------------
    @property
    def sources(self) -> tuple[str, ...]:
        """The categories whose committed rows this category consumes (second-round categories)."""
        return ()

    @property
    def references(self) -> tuple[str, ...]:
        """The categories whose committed rows it reads without consuming them (`Params.references`)."""
        return type(self.params).references

    def refer(self, row: SourceRow) -> None:
        """Takes one committed row of a `references` category. The default reads a `character` row's
        card and adds it to the cards this category plays, so cards committed during the run are
        played in the same run; other rows are ignored."""
        card = Card.from_text(row.response) if row.category == "character" else None
        if card is not None and card.key not in {known.key for known in self.cards}:
            self.cards.append(card)

    # -- helpers for categories ----------------------------------------------------------------
    @property
    def system(self) -> str | None:
        return self.params.system_prompt or self.default_system

    def topic(self) -> str:
        """A topic drawn from the topics file, or a neutral fallback when there is none."""
        return self.rng.choice(self.topics) if self.topics else NO_TOPIC

    def clean_inputs(self, texts: list[str]) -> list[str]:
        """Texts from the user's files (seed tasks, contexts) scrubbed of PII as `pii` says, before
        any of them is sent to the teacher; under `drop` the ones with PII are left out. The
        findings are counted in `inputs_scrubbed`."""
        if self.pii is None or not texts:
            return texts
        from instructflow.instructors.pii import Scrubber, scrub_inputs

        kept, found = scrub_inputs(texts, Scrubber.from_config(self.pii))
        self.inputs_scrubbed.update(found)
        return kept

    def common_values(self) -> dict[str, Any]:
        return {
            "language": self.params.language,
            "readability": self.params.readability or "",
            "avoid_topics": ", ".join(self.avoid_topics),
        }

    def candidate(self, instruction: str, response: str | None = None, **fields: Any) -> Candidate:
        """A candidate of this category carrying the template digest and system prompt."""
        fields.setdefault("system", self.system)
        fields.setdefault("skip_prompt_formatting", self.skip_prompt_formatting)
        if fields.get("topic") == NO_TOPIC:  # nothing was drawn: the row's `topic` stays null
            fields["topic"] = None
        return Candidate(
            category=self.category,
            instruction=instruction.strip(),
            response=response.strip() if response is not None else None,
            template_digest=self.template.digest,
            **fields,
        )

    async def ask(
        self, teacher: Teacher, prompt: str, call: str, system: str | None = None, grammar: str | None = None
    ) -> Reply:
        """Sends one user prompt (and optional system prompt) to the teacher. The reply may be cut at
        `max_tokens` (`Reply.truncated`): read lists with `parse_reply`, answers with `ask_answer`."""
        return await teacher.chat(
            _messages(prompt, system), category=self.category, call=call,
            max_tokens=self.params.max_tokens, temperature=self.params.temperature,
            **({"grammar": grammar} if grammar else {}),
        )

    async def ask_answer(
        self, teacher: Teacher, prompt: str, call: str, candidate: Candidate, system: str | None = None,
        max_tokens: int | None = None, grammar: str | None = None,
    ) -> Reply:
        """An answer call for `candidate`, whose reply must end whole: a reply cut at `max_tokens` is
        continued up to `max_continuations` times. The tokens of every call go on the candidate.

        Raises:
            ReplyTruncated: the reply stayed cut (the runner rejects the candidate as `truncated`).
        """
        reply = await self.ask_continued(teacher, prompt, call, system, max_tokens, grammar)
        candidate.add_usage(reply.prompt_tokens, reply.completion_tokens, reply.tokens_estimated)
        if reply.truncated:
            cap = max_tokens or self.params.max_tokens
            raise ReplyTruncated(self.category, call, 1 + self.params.max_continuations, cap, reply.text)
        return reply

    async def ask_continued(
        self, teacher: Teacher, prompt: str, call: str, system: str | None = None, max_tokens: int | None = None,
        grammar: str | None = None,
    ) -> Reply:
        """`ask`, with a reply cut at `max_tokens` continued up to `max_continuations` times (see
        `truncation.ask_whole`); the reply is still `truncated` when the last part was cut too."""
        return await ask_whole(
            teacher, _messages(prompt, system), category=self.category, call=call,
            max_tokens=max_tokens or self.params.max_tokens, temperature=self.params.temperature,
            continuations=self.params.max_continuations, grammar=grammar,
        )

    def parse_reply(self, reply: Reply, values: dict[str, Any]) -> list[Candidate]:
        """`parse` on a generating reply; from one cut at `max_tokens`, only the items the cut did not
        reach (`parsing.whole_items`, with a `fork` for the trial read)."""
        if not reply.truncated:
            return self.parse(reply.text, values)
        trial = self.fork()
        return whole_items(
            lambda text: self.parse(text, values), reply.text, key=lambda c: (c.instruction, c.response),
            trial=lambda text: trial.parse(text, values),
        )

    def fork(self) -> Instructor:
        """A copy sharing this one's templates and params but not the state a `parse` may change
        (its rng, and any dict, list or set it keeps): for a trial read that must leave no trace."""
        copy_ = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, random.Random) or (isinstance(value, dict | list | set) and not _templates(value)):
                setattr(copy_, name, copy.deepcopy(value))
        return copy_

    # -- what the runner calls -----------------------------------------------------------------
    async def generate(self, teacher: Teacher) -> list[Candidate]:
        """One generating call: choose variables, render, ask, parse. Usage is split over results."""
        values = self.choose()
        prompt = self.template.render({**self.common_values(), **values})
        reply = await self.ask(teacher, prompt, call="generate", grammar=self.grammar("generate", values))
        candidates = self.parse_reply(reply, values)
        share = max(len(candidates), 1)
        for cand in candidates:
            cand.model = reply.model
            cand.add_usage(reply.prompt_tokens // share, reply.completion_tokens // share, reply.tokens_estimated)
        return candidates

    async def respond(self, candidate: Candidate, teacher: Teacher) -> Candidate | None:
        """Fills in the response of a candidate that passed the novelty check, or returns None."""
        if self.response_template is None:
            return await self.respond_as_asked(candidate, teacher)
        values = {**self.common_values(), **self.response_values(candidate)}
        prompt = self.response_template.render(values)
        grammar = self.grammar("respond", values)
        reply = await self.ask_answer(teacher, prompt, "respond", candidate, self.system, grammar=grammar)
        candidate.add_template(self.response_template.digest)
        return self._answered(reply, candidate)

    async def respond_as_asked(self, candidate: Candidate, teacher: Teacher) -> Candidate | None:
        """Answers the instruction exactly as the row holds it (under the row's system prompt), with no
        response template: the row is then what produced its answer."""
        reply = await self.ask_answer(teacher, candidate.instruction, "respond", candidate, candidate.system)
        return self._answered(reply, candidate)

    def _answered(self, reply: Reply, candidate: Candidate) -> Candidate | None:
        text = self.parse_response(reply.text, candidate)
        if not text:
            return None
        candidate.response = text
        candidate.model = reply.model
        return candidate


class TaskList(Instructor):
    """Base of the categories whose generating call returns a numbered list of requests about a
    topic (answered one by one later). Their `Params` carry `min_words`: shorter items are dropped."""

    variables: ClassVar[frozenset[str]] = frozenset({"count", "topic"})

    def list_items(self, reply: str) -> list[str]:
        """The reply's list items with at least `min_words` words."""
        min_words = getattr(self.params, "min_words", 1)
        return [item for item in numbered_items(reply) if len(item.split()) >= min_words]

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        return [self.candidate(item, topic=values["topic"]) for item in self.list_items(reply)]


def _messages(prompt: str, system: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    return messages


def _templates(value: dict[Any, Any] | list[Any] | set[Any]) -> bool:
    """Whether a container holds templates (shared by a `fork`, never copied)."""
    return any(isinstance(v, PromptTemplate) for v in (value.values() if isinstance(value, dict) else value))
