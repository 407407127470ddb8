from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from instructflow.instructors._textparse import (
    code_only,
    format_input,
    labelled_lines,
    load_structured,
    parse_inputs,
    parse_instruction,
    records,
)


def test_labelled_lines_accept_common_decorations_and_continuations() -> None:
    text = "intro\n**QUESTION 1:** Why?\nstill the question\nAnswer: Because.\n> QUESTION. Next?"
    assert labelled_lines(text, ["QUESTION", "ANSWER"]) == [
        ("QUESTION", "Why?\nstill the question"),
        ("ANSWER", "Because."),
        ("QUESTION", "Next?"),
    ]
    assert labelled_lines("SAMPLE  LINES: hi", ["SAMPLE LINES"]) == [("SAMPLE LINES", "hi")]


def test_records_split_on_the_first_label_or_a_repeated_one() -> None:
    text = "REQUEST: a\nJOKE: b\nJOKE: orphan\nREQUEST: c\nREQUEST: d\nJOKE: e"
    assert records(text, ["REQUEST", "JOKE"]) == [
        {"REQUEST": "a", "JOKE": "b"},
        {"JOKE": "orphan"},
        {"REQUEST": "c"},
        {"REQUEST": "d", "JOKE": "e"},
    ]


def test_code_only_takes_fenced_blocks_or_the_bare_text() -> None:
    assert code_only("Intro\n```py\na = 1\n```\nthen\n```\nb = 2\n```\nbye") == "a = 1\n\nb = 2"
    assert code_only("```js\nlet x = 1;") == "let x = 1;"  # truncated: no closing fence
    assert code_only("plain = True\n```") == "plain = True"
    assert code_only("```\n```") == ""


def test_load_structured() -> None:
    assert load_structured('```json\n{"a": 1}\n```', "json") == {"a": 1}
    assert load_structured("a: 1\nb: [2]", "yaml") == {"a": 1, "b": [2]}
    assert load_structured("a: 1", "json") is None
    assert load_structured("a: [1", "yaml") is None
    assert load_structured("", "yaml") is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_helpers_never_raise(text: str) -> None:
    labelled_lines(text, ["QUESTION", "A", "PART"])
    records(text, ["CONTEXT", "QUESTION", "ANSWER"])
    code_only(text)
    load_structured(text, "yaml")
    load_structured(text, "json")
    parse_inputs(text)
    parse_instruction(text)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(
                st.from_regex(r"[a-z]{1,10}", fullmatch=True),
                st.from_regex(r"[\w./:-]{1,20}", fullmatch=True),
                max_size=3,
            ),
            st.from_regex(r"[A-Za-z][\w ,.]{0,60}[\w.]", fullmatch=True),
        ),
        min_size=1,
        max_size=4,
    ),
    st.from_regex(r"[A-Za-z][\w ,.?]{0,40}[\w.?]", fullmatch=True),
)
def test_the_closed_context_format_round_trips(blocks, instruction) -> None:
    text = format_input(blocks, instruction)
    assert parse_inputs(text) == blocks
    assert parse_instruction(text) == instruction
