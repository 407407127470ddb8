"""Reading multi-speaker transcripts (instructors/conversation.py): markers, fuzzy speaker matching,
cleaning, and the named reasons a conversation is dropped for."""

from __future__ import annotations

import pytest

from instructflow.instructors import conversation as conv
from instructflow.instructors.conversation import (
    Cast,
    ConversationRejected,
    Turn,
    clean_text,
    read_conversation,
)

RP_CAST = Cast(["Mira Vale", "Captain Amara Oduya", "Tobias Fenwick"], user="Tobias Fenwick")
QA_CAST = Cast(["Mira Vale"], user="User", aliases={"User": ["Interviewer", "Question", "You"]})


def read(text: str, cast: Cast = RP_CAST, opening: str = "Is anyone here?", **kw) -> list[Turn]:
    kw.setdefault("min_exchanges", 1)
    kw.setdefault("max_exchanges", 10)
    kw.setdefault("group_answers", cast is RP_CAST)
    return read_conversation(text, cast, opening, **kw)[0]


def rejected(text: str, cast: Cast = RP_CAST, **kw) -> ConversationRejected:
    with pytest.raises(ConversationRejected) as info:
        read(text, cast, **kw)
    assert info.value.reason in conv.REASONS and info.value.text == text and info.value.detail
    return info.value


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("Mira", "Mira Vale"), ("MIRA VALE", "Mira Vale"), ("mira vale", "Mira Vale"), ("Mirra", "Mira Vale"),
        ("Vale", "Mira Vale"), ("Captain Oduya", "Captain Amara Oduya"), ("Oduya", "Captain Amara Oduya"),
        ("Captain", "Captain Amara Oduya"), ("Tobais", "Tobias Fenwick"), ("Fenwick", "Tobias Fenwick"),
        ("Guard", None), ("Narrator", None), ("Note", None), ("Mira and Tobias", None), ("Mike", None),
    ],
)
def test_speaker_labels_are_matched_to_the_cast_fuzzily(label: str, name: str | None) -> None:
    assert RP_CAST.match(label) == name


def test_a_label_that_fits_two_characters_alike_matches_neither() -> None:
    cast = Cast(["Captain Reyes", "Captain Oduya"], user="Narrator")
    assert cast.match("Captain") is None
    assert cast.match("Captain Oduya") == "Captain Oduya" and cast.match("Reyes") == "Captain Reyes"


def test_aliases_name_the_user() -> None:
    assert [QA_CAST.match(label) for label in ("Interviewer", "USER", "You", "Mira")] == ["User"] * 3 + ["Mira Vale"]


def test_markers_tolerate_markdown_asides_and_quoting_and_continuation_lines() -> None:
    text = (
        "Sure! Here is the scene.\n\n"
        "**Mira:** *sets down the lantern* You came.\n"
        "The tide is turning.\n"
        "> Captain Oduya (gruffly): Late, as ever.\n"
        "Tobias: Sorry. The plan is simple: we row.\n"
        "__Mira Vale__: Then row."
    )
    turns = read(text)
    assert turns == [
        Turn("Tobias Fenwick", "Is anyone here?"),
        Turn("Mira Vale", "*sets down the lantern* You came.\nThe tide is turning."),
        Turn("Captain Amara Oduya", "Late, as ever."),
        Turn("Tobias Fenwick", "Sorry. The plan is simple: we row."),
        Turn("Mira Vale", "Then row."),
    ]


def test_a_colon_inside_ordinary_text_does_not_start_a_turn() -> None:
    turns = read("Mira: Listen.\nthe rule is this: no lights.\nThe plan is simple: wait.\nhttp://x.example: a link")
    assert len(turns) == 2 and turns[1].text.count("\n") == 3


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("Hello. (Remember to stay in character and keep it short.) Bye.", "Hello. Bye."),
        ("Hello. [OOC: nice scene so far] Bye.", "Hello. Bye."),
        ("Hello. ((brb)) Bye.", "Hello. Bye."),
        ("Hello.\n[End of scene]", "Hello."),
        ("Hello.<|im_end|>", "Hello."),
        ("*smiles warmly. Welcome aboard.", "smiles warmly. Welcome aboard."),
        ("*smiles* Welcome *waves", "*smiles* Welcome waves"),
        ("A _quiet_ word with snake_case names_ here.", "A _quiet_ word with snake_case names here."),
        ("**Bold start and nothing else", "Bold start and nothing else"),
        ("Fine. * * Really.", "Fine. Really."),
        ("*one*\n\n*two", "*one*\n\ntwo"),  # delimiters pair within a paragraph
        ("(She nods.) Yes.", "(She nods.) Yes."),  # an ordinary parenthesis stays
    ],
)
def test_reminders_meta_text_and_stray_delimiters_are_cleaned(text: str, clean: str) -> None:
    assert clean_text(text) == clean


def test_hallucinated_speakers_and_empty_turns_are_dropped_and_counted() -> None:
    text = (
        "Mira: You came.\n"
        "Guard: Halt! Who goes there?\n"
        "Captain: Stand down.\n"
        "Tobias: Thanks.\n"
        "Mira: (Remember to stay in character.)\n"
        "Captain Oduya: Let's go."
    )
    turns, cleaning = read_conversation(text, RP_CAST, "Hi.", min_exchanges=2, max_exchanges=5, group_answers=True)
    assert [t.speaker for t in turns] == ["Tobias Fenwick", "Mira Vale", "Captain Amara Oduya", "Tobias Fenwick",
                                          "Captain Amara Oduya"]
    assert cleaning.unknown == {"Guard": 1} and cleaning.empty == 1 and cleaning.meta == 1


def test_one_speakers_split_turn_is_merged() -> None:
    turns, cleaning = read_conversation(
        "Mira: First part.\nMira: Second part.\nTobias: Ok.\nMira: Done.", RP_CAST, "Hi.",
        min_exchanges=1, max_exchanges=5,
    )
    assert turns[1] == Turn("Mira Vale", "First part.\n\nSecond part.") and cleaning.merged == 1


def test_a_repeated_opening_is_dropped_and_the_users_trailing_line_is_cut() -> None:
    text = "Tobias: Is anyone here?\nMira: Yes.\nTobias: Good.\nMira: Come in.\nTobias: I will now step inside."
    turns, cleaning = read_conversation(text, RP_CAST, "Is anyone here?", min_exchanges=2, max_exchanges=5)
    assert [t.text for t in turns] == ["Is anyone here?", "Yes.", "Good.", "Come in."] and cleaning.cut == 1


def test_exchanges_past_the_maximum_are_cut() -> None:
    text = "\n".join(f"Mira: answer {i}.\nTobias: question {i}?" for i in range(6))
    turns, cleaning = read_conversation(text, RP_CAST, "Hi.", min_exchanges=2, max_exchanges=3)
    assert len(turns) == 6 and turns[-1].text == "answer 2." and cleaning.cut == 7


def test_gtkm_transcript_alternates_question_and_answer() -> None:
    text = "Mira: I grew up by the sea.\nInterviewer: What did you fear?\nMira Vale: Storms.\nUser: And now?\nMira: Nothing."
    turns = read(text, QA_CAST, opening="Where did you grow up?", min_exchanges=3)
    assert [t.speaker for t in turns] == ["User", "Mira Vale"] * 3


def test_rejects_a_reply_with_no_markers() -> None:
    assert rejected("Once upon a time there was a lantern.").reason == conv.NO_TRANSCRIPT


def test_rejects_a_conversation_too_short_after_cleaning() -> None:
    err = rejected("Mira: Yes.\nTobias: Hm?\nMira: (Remember: stay in character.)", min_exchanges=2)
    assert err.reason == conv.TOO_SHORT and "1 exchange" in err.detail


def test_rejects_mostly_hallucinated_speakers() -> None:
    err = rejected("Guard: Halt!\nInnkeeper: Welcome.\nMira: Hi.\nBard: *plays*")
    assert err.reason == conv.UNKNOWN_SPEAKERS and "Bard, Guard, Innkeeper" in err.detail


def test_rejects_the_user_speaking_twice() -> None:
    # The hallucinated answer between two user lines is dropped: the user's second line has no answer before it.
    err = rejected("Mira: Yes.\nTobias: Where?\nGuard: There.\nTobias: Thanks.\nMira: Go.")
    assert err.reason == conv.ALTERNATION and "twice" in err.detail


def test_rejects_an_unanswered_question_in_a_strict_transcript() -> None:
    text = "Mira: By the sea.\nWhatever: What did you fear?\nMira: Storms.\nUser: And now?\nMira: Nothing."
    err = rejected(text, QA_CAST, min_exchanges=1)
    assert err.reason == conv.ALTERNATION


def test_rejects_a_transcript_that_starts_with_a_new_user_line() -> None:
    err = rejected("Tobias: Let me tell you something else entirely.\nMira: Ok.")
    assert err.reason == conv.ALTERNATION and "opening" in err.detail


@pytest.mark.parametrize(
    "text",
    ["Mira: As an AI, I cannot have feelings.\nTobias: Oh.\nMira: Yes.", "Mira: Captain Oduya: Aye, we sail.\nTobias: Ok."],
)
def test_rejects_a_turn_in_the_wrong_voice(text: str) -> None:
    assert rejected(text).reason == conv.WRONG_VOICE


def test_messages_group_the_characters_answers_and_label_them_when_asked() -> None:
    turns = read("Mira: You came.\nCaptain Oduya: Late.\nTobias: Sorry.\nMira: Go.")
    labelled = conv.to_messages(turns, RP_CAST, "The scene.", labelled=True)
    assert [(m["role"], m["name"]) for m in labelled] == [
        ("system", None), ("user", "Tobias Fenwick"), ("assistant", None), ("user", "Tobias Fenwick"),
        ("assistant", "Mira Vale"),
    ]
    assert labelled[2]["content"] == "Mira Vale: You came.\n\nCaptain Amara Oduya: Late."
    plain = conv.to_messages(read("Mira: Storms.", QA_CAST, opening="Fears?"), QA_CAST, None, labelled=False)
    assert plain == [
        {"role": "user", "content": "Fears?", "name": "User"},
        {"role": "assistant", "content": "Storms.", "name": "Mira Vale"},
    ]


def test_a_long_cast_name_is_a_marker_and_a_lone_star_between_spaces_stays() -> None:
    cast = Cast(["Captain Amara Oduya of the Seven Seas", "Mira Vale"], user="Mira Vale")
    turns = read("Captain Amara Oduya of the Seven Seas: Two * three is six, *she says.", cast, min_exchanges=1)
    assert turns[1] == Turn("Captain Amara Oduya of the Seven Seas", "Two * three is six, she says.")
