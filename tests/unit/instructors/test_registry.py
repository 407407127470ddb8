"""Every registered category, driven from the recorded replies kept beside its templates.

Files are found by naming convention, so a new category is covered with no new test code:
`prompts/<category>.j2` (+ `prompts/<category>.<name>.j2`) are its templates, `prompts/<category>.example.txt`
is the reply to its generating call and `prompts/<category>.<call>.example.txt` the reply to call <call>.
"""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path
from typing import Any

import pytest

from instructflow.instructors import registry
from instructflow.instructors.base import CategoryParams, Instructor
from instructflow.instructors.record import Candidate
from instructflow.instructors.render import PromptTemplate, TemplateError, load_template
from instructflow.instructors.teacher.api import Reply
from instructflow.prompts import PROMPTS_DIR

try:  # the stub teacher's own perturbation, when present (it is owned and tested elsewhere)
    from instructflow.instructors.teacher.stub.replies import perturb as stub_perturb
except ImportError:  # pragma: no cover - only before the stub exists
    stub_perturb = None

CATEGORIES = registry.categories()
TOPICS = ["lighthouses", "sourdough baking", "volcanoes"]
GENERIC = (
    "The harbour was quiet that morning. A few boats were tied up along the wall, gulls walked on "
    "the wet stones, and the smell of tar and salt hung in the air while the tide slowly came in."
)
_FILLER = [
    "apple",
    "river",
    "copper",
    "lantern",
    "meadow",
    "pencil",
    "thunder",
    "velvet",
    "orbit",
    "basket",
]
# Lower-case words that are not part of a JSON key ("key":), a YAML key (key:), an identifier
# (snake_case, CamelCase) or a marker (:evidence1:) -- what the stub teacher is said to replace.
_CONTENT_WORD = re.compile(r"(?<![\w:\"'-])[a-z]{2,}(?![\w:\"'(-])")


# -- helpers --------------------------------------------------------------------------------------
def examples(category: str) -> dict[str, str]:
    """Recorded replies by call name, found by naming convention."""
    found = {}
    main = PROMPTS_DIR / f"{category}.example.txt"
    if main.exists():
        found["generate"] = main.read_text(encoding="utf-8")
    for path in PROMPTS_DIR.glob(f"{category}.*.example.txt"):
        found[path.name[len(category) + 1 : -len(".example.txt")]] = path.read_text(
            encoding="utf-8"
        )
    return found


def template_files(category: str) -> set[Path]:
    return {*PROMPTS_DIR.glob(f"{category}.j2"), *PROMPTS_DIR.glob(f"{category}.*.j2")}


def make(category: str, seed: int = 0, **options: Any) -> Instructor:
    cls = registry.get_instructor(category)
    return cls(
        cls.Params(count=1, **options),
        topics=TOPICS,
        avoid_topics=["warfare"],
        rng=random.Random(seed),
    )


def perturb(text: str, seed: int) -> str:
    """A copy with ordinary lower-case words replaced, as the stub teacher answers."""
    rng = random.Random(seed)
    return _CONTENT_WORD.sub(lambda m: rng.choice(_FILLER), text)


class FakeTeacher:
    """Answers each call with the reply recorded for it (keyed by call name), else `default`."""

    def __init__(self, replies: dict[str, str], default: str = GENERIC) -> None:
        self.replies, self.default = replies, default
        self.calls: list[tuple[str, str, list[dict[str, str]]]] = []

    async def chat(self, messages, *, category, call, max_tokens=None, temperature=None) -> Reply:
        self.calls.append((category, call, messages))
        text = self.replies.get(call, self.default)
        return Reply(
            text=text, prompt_tokens=100, completion_tokens=len(text.split()), model="fake-model"
        )


async def _flow(instr: Instructor, teacher: FakeTeacher) -> list[Candidate]:
    """What the runner does: generate, then answer every candidate still without a response."""
    done = []
    for cand in await instr.generate(teacher):
        result = await instr.respond(cand, teacher) if cand.needs_response else cand
        if result is not None:
            done.append(result)
    return done


def flow(instr: Instructor, teacher: FakeTeacher) -> list[Candidate]:
    return asyncio.run(_flow(instr, teacher))


def flow_until_some(instr: Instructor, teacher: FakeTeacher, rounds: int = 8) -> list[Candidate]:
    """Repeats the flow, as the runner does, until a round yields something: one recorded answer
    cannot suit every sampled variant (e.g. a `contextual` question meant to be unanswerable)."""
    for _ in range(rounds):
        results = flow(instr, teacher)
        if results:
            return results
    return []


def assert_valid(cand: Candidate, category: str) -> None:
    assert cand.category == category
    assert cand.instruction.strip(), "empty instruction"
    assert cand.response is not None and cand.response.strip(), "empty response"
    assert cand.template_digest


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> list[tuple[PromptTemplate, dict[str, Any], str]]:
    """Records every template render (template, values, text) made while the test runs."""
    seen: list[tuple[PromptTemplate, dict[str, Any], str]] = []
    original = PromptTemplate.render

    def recording(self: PromptTemplate, values: dict[str, Any]) -> str:
        text = original(self, values)
        seen.append((self, dict(values), text))
        return text

    monkeypatch.setattr(PromptTemplate, "render", recording)
    return seen


# -- shape of a category ------------------------------------------------------------------------
@pytest.mark.parametrize("category", CATEGORIES)
def test_category_has_params_template_and_recorded_reply(category: str) -> None:
    cls = registry.get_instructor(category)
    assert issubclass(cls.Params, CategoryParams)
    assert cls.__doc__ and cls.__doc__.strip()
    assert (PROMPTS_DIR / f"{category}.j2").exists()
    assert "generate" in examples(category), f"no prompts/{category}.example.txt"
    with pytest.raises(ValueError):
        cls.Params(count=1, no_such_option=True)


@pytest.mark.parametrize("category", CATEGORIES)
def test_recorded_reply_parses_into_candidates(category: str) -> None:
    instr = make(category)
    values = instr.choose()
    candidates = instr.parse(examples(category)["generate"], values)
    assert candidates, f"prompts/{category}.example.txt parsed into nothing"
    for cand in candidates:
        assert cand.instruction.strip() and cand.category == category
        assert cand.response is None or cand.response.strip()


@pytest.mark.parametrize("category", CATEGORIES)
def test_end_to_end_with_recorded_replies(category: str, rendered) -> None:
    teacher = FakeTeacher(examples(category))
    results = flow_until_some(make(category), teacher)
    assert results, "no candidate survived generate + respond"
    for cand in results:
        assert_valid(cand, category)
        assert cand.model == "fake-model" and cand.prompt_tokens > 0
    assert {c for c, _, _ in teacher.calls} == {category}
    # Every recorded reply belongs to a call the category really makes.
    assert set(examples(category)) <= {call for _, call, _ in teacher.calls}
    # Every template file of the category was rendered, and no Jinja syntax leaked into a prompt.
    assert template_files(category) <= {t.path for t, _, _ in rendered}
    for _, _, text in rendered:
        assert "{{" not in text and "{%" not in text


@pytest.mark.parametrize("category", CATEGORIES)
def test_templates_render_strictly(category: str, rendered) -> None:
    flow(make(category), FakeTeacher(examples(category)))
    assert rendered
    for template, values, text in list(rendered):
        assert template.render(values) == text
        for name in template.variables:
            with pytest.raises(TemplateError, match=name):
                template.render({k: v for k, v in values.items() if k != name})


@pytest.mark.parametrize("category", CATEGORIES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_perturbed_replies_still_flow(category: str, seed: int) -> None:
    replies = {
        call: perturb(text, seed * 31 + i)
        for i, (call, text) in enumerate(sorted(examples(category).items()))
    }
    results = flow_until_some(make(category, seed), FakeTeacher(replies, perturb(GENERIC, seed)))
    assert results, f"perturbed replies (seed {seed}) gave nothing"
    for cand in results:
        assert_valid(cand, category)


@pytest.mark.parametrize("category", CATEGORIES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stub_teacher_replies_flow(category: str, seed: int) -> None:
    if stub_perturb is None:
        pytest.skip("instructors/teacher/stubtext.py is not there yet")
    rng = random.Random(seed)
    replies = {
        call: stub_perturb(text.strip(), rng) for call, text in sorted(examples(category).items())
    }
    results = flow_until_some(make(category, seed), FakeTeacher(replies, perturb(GENERIC, seed)))
    assert results, f"stub-perturbed replies (seed {seed}) gave nothing"
    for cand in results:
        assert_valid(cand, category)


@pytest.mark.parametrize("category", CATEGORIES)
def test_shared_options_reach_the_prompt_and_rows(category: str, rendered) -> None:
    instr = make(
        category,
        language="Esperanto",
        readability="a twelve-year-old can follow it",
        system_prompt="SYS-MARK",
    )
    results = flow_until_some(instr, FakeTeacher(examples(category)))
    main = [text for t, _, text in rendered if t.path == PROMPTS_DIR / f"{category}.j2"]
    assert main
    assert "Esperanto" in main[0] and "twelve-year-old" in main[0] and "warfare" in main[0]
    assert results and all("SYS-MARK" in (c.system or "") for c in results)


# -- malformed replies --------------------------------------------------------------------------
def junk(example: str) -> dict[str, str]:
    lines = example.splitlines()
    random.Random(7).shuffle(lines)
    half = len(example) // 2
    return {
        "empty": "",
        "whitespace": "  \n\t\n   ",
        "prose": GENERIC,
        "binary": bytes(range(256)).decode("latin-1") * 3,
        "random_bytes": random.Random(3).randbytes(3000).decode("latin-1"),
        "first_half": example[:half],
        "second_half": example[half:],
        "shuffled": "\n".join(lines),
    }


_NOTHING = {"empty", "whitespace", "prose", "binary", "random_bytes"}


@pytest.mark.parametrize("category", CATEGORIES)
def test_malformed_generating_replies_drop_and_never_crash(category: str) -> None:
    for kind, text in junk(examples(category)["generate"]).items():
        instr = make(category)
        candidates = instr.parse(text, instr.choose())
        if kind in _NOTHING:
            assert candidates == [], kind
        for cand in candidates:
            assert cand.instruction.strip(), kind
        results = flow(instr, FakeTeacher({**examples(category), "generate": text}))
        if kind in _NOTHING:
            assert results == [], kind
        for cand in results:
            assert_valid(cand, category)


@pytest.mark.parametrize("category", CATEGORIES)
def test_malformed_answer_replies_drop_and_never_crash(category: str) -> None:
    recorded = examples(category)
    later_calls = [call for call in recorded if call != "generate"] or ["respond"]
    samples = {
        **junk(recorded.get(later_calls[0], GENERIC)),
        **{f"{c}-broken": junk(recorded[c])["first_half"] for c in recorded if c != "generate"},
    }
    for kind, text in samples.items():
        # Every call after the generating one gets the malformed text.
        teacher = FakeTeacher({"generate": recorded["generate"]}, default=text)
        for cand in flow(make(category), teacher):
            assert_valid(cand, category)
        instr = make(category)
        for cand in instr.parse(recorded["generate"], instr.choose()):
            if cand.needs_response:
                answer = instr.parse_response(text, cand)
                assert answer is None or answer.strip(), kind
                if kind in {"empty", "whitespace"}:
                    assert answer is None


# -- the template loader's own checks ------------------------------------------------------------
def test_undeclared_variable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "bad.j2").write_text(
        "Write {{ count }} items about {{ subject }} in {{ language }}."
    )
    with pytest.raises(TemplateError, match="undeclared.*subject"):
        load_template("bad", frozenset({"count"}), directory=tmp_path)


def test_declared_but_unused_variable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "bad.j2").write_text("Write {{ count }} items.")
    with pytest.raises(TemplateError, match="never used.*topic"):
        load_template("bad", frozenset({"count", "topic"}), directory=tmp_path)


def test_syntax_error_and_missing_file_are_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.j2").write_text("{% for x in items %}{{ x }}")
    with pytest.raises(TemplateError, match="syntax"):
        load_template("bad", frozenset({"items"}), directory=tmp_path)
    with pytest.raises(TemplateError, match="cannot read"):
        load_template("absent", frozenset(), directory=tmp_path)


def test_render_is_strict_about_values(tmp_path: Path) -> None:
    (tmp_path / "ok.j2").write_text(
        "{{ count }} about {{ topic.name }}{% if readability %} ({{ readability }}){% endif %}"
    )
    template = load_template("ok", frozenset({"count", "topic"}), directory=tmp_path)
    with pytest.raises(TemplateError, match="topic"):
        template.render({"count": 3, "readability": ""})
    with pytest.raises(TemplateError):
        template.render(
            {"count": 3, "topic": "plain string", "readability": ""}
        )  # no .name attribute
    assert (
        template.render({"count": 3, "topic": {"name": "tides"}, "readability": ""})
        == "3 about tides"
    )


# -- the all-categories config and the docs page -------------------------------------------------
ROOT = Path(__file__).resolve().parents[3]


def test_all_categories_config_lists_every_category_with_a_small_count() -> None:
    from instructflow.config import load_config

    config = load_config(ROOT / "config" / "all-categories.yaml")
    assert sorted(config.categories) == CATEGORIES
    assert all(3 <= params.count <= 6 for params in config.categories.values())


def test_docs_page_covers_every_category_and_option() -> None:
    page = (ROOT / "docs" / "categories.md").read_text(encoding="utf-8")
    for category in CATEGORIES:
        heading = f"\n## `{category}`"
        assert heading in page, f"docs/categories.md has no section {heading.strip()}"
        section = page.split(heading, 1)[1].split("\n## ", 1)[0]
        own = set(registry.get_instructor(category).Params.model_fields) - set(
            CategoryParams.model_fields
        )
        for option in own:
            assert f"`{option}`" in section, (
                f"docs/categories.md: {category} does not document {option}"
            )
