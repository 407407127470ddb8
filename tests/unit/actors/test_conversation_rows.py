"""Conversation rows: `Candidate.messages`, the ``messages`` and ``source_id`` columns, and the
one-exchange equivalent of a single-turn row."""

from __future__ import annotations

import pytest

from instructflow.actors.core.rejects import reject_record
from instructflow.actors.core.schema import rows_to_table, table_to_rows
from instructflow.instructors.record import Candidate, conversation, message


def chat() -> Candidate:
    turns = [
        message("system", "You are Ann, a sailor."),
        message("user", "Where are we?", "Bob"),
        message("assistant", "Off the Azores.", "Ann"),
        message("user", "How long to port?", "Bob"),
        message("assistant", "Two days, if the wind holds.", "Ann"),
    ]
    return Candidate(
        category="rp", instruction="Where are we?", response="Off the Azores.",
        system="You are Ann, a sailor.", messages=turns, source_id="0123456789abcdef",
    )


def test_single_turn_conversation_is_its_one_exchange() -> None:
    c = Candidate(category="general", instruction="Name a prime.", response="7", system="Be brief.")
    assert conversation(c) == [
        {"role": "system", "content": "Be brief.", "name": None},
        {"role": "user", "content": "Name a prime.", "name": None},
        {"role": "assistant", "content": "7", "name": None},
    ]
    unanswered = Candidate(category="general", instruction="Name a prime.")
    assert conversation(unanswered) == [{"role": "user", "content": "Name a prime.", "name": None}]
    assert not c.is_conversation and chat().is_conversation
    with pytest.raises(ValueError, match="role 'narrator'"):
        message("narrator", "It was night.")


def test_messages_and_source_id_round_trip_and_single_turn_rows_stay_none() -> None:
    single = Candidate(category="general", instruction="Name a prime.", response="7", system="Be brief.")
    table = rows_to_table([single, chat()])
    stored = table.column("messages").to_pylist()
    assert stored[0] == conversation(single) and stored[1] == chat().messages
    assert table.column("source_id").to_pylist() == [None, "0123456789abcdef"]
    back = table_to_rows(table)
    assert back[0].messages is None and back[0].id == single.id
    assert back[1].messages == chat().messages and back[1].source_id == "0123456789abcdef"
    assert back[1].id == chat().id  # the id of a conversation is that of its opening (system, user turn)


def test_a_rejected_conversation_keeps_its_turns_in_the_rejects_log() -> None:
    record = reject_record(chat(), "low_score")
    assert record["messages"] == chat().messages and record["source_id"] == "0123456789abcdef"
    plain = reject_record(Candidate(category="general", instruction="Name a prime.", response="7"), "refusal")
    assert "messages" not in plain and "source_id" not in plain
