"""The run's own cards folder: written from committed `character` rows, each card once."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
from pyarrow import fs as pafs

from instructflow.actors.core.cards import run_cards, sync_cards
from instructflow.actors.core.storage import open_store
from instructflow.actors.core.writer import PartWriter
from instructflow.instructors.characters import Card, load_cards
from instructflow.instructors.record import Candidate


def card(name: str, personality: str = "Wry and patient.") -> Card:
    return Card(
        name=name,
        description=f"{name} keeps the tide tables of a small harbour town.",
        personality=personality,
        speech_style="Short sentences, sea words.",
        stay_in_character="Knows the harbour and its boats; nothing of the wider world.",
        example_lines=["The tide waits for no one."],
    )


def row(category: str, instruction: str, response: str) -> Candidate:
    return Candidate(category=category, instruction=instruction, response=response, model="stub", template_digest="t")


def commit(writer: PartWriter, *rows: Candidate) -> None:
    writer.add(list(rows))
    writer.flush()


def test_committed_cards_are_saved_once_and_load_back(tmp_path: Path) -> None:
    writer = PartWriter(str(tmp_path), rows_per_part=100)
    ada, bo = card("Ada Quill"), card("Bo Marsh")
    commit(writer, row("character", "Describe Ada.", ada.to_text()), row("general", "Hi?", "NAME: not a card row"))
    commit(writer, row("character", "Describe Bo.", bo.to_text()))
    store = open_store(str(tmp_path))
    first = sync_cards(store)
    assert first.saved == ["characters/ada-quill.yaml", "characters/bo-marsh.yaml"] and first.skipped == []
    assert load_cards(tmp_path / "characters") == [ada, bo] == run_cards(store)
    assert sync_cards(store).saved == []  # a resumed run or the end of the run: nothing new
    # A later, different card with a name already saved is left out (the first committed one stays),
    # and so is a `character` row whose response is not a card.
    commit(writer, row("character", "Describe ADA again.", card("ada  quill", "Loud.").to_text()),
           row("character", "Describe nobody.", "just prose"))
    later = sync_cards(store)
    assert later.saved == []
    assert len(later.skipped) == 2 and "not a character card" in later.skipped[0]
    assert "a different card named 'Ada Quill'" in later.skipped[1]
    assert load_cards(tmp_path / "characters") == [ada, bo]
    writer.close()


def test_cards_are_saved_on_an_object_store() -> None:
    filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem("memory")))
    root = f"/bucket/{uuid.uuid4().hex}"
    writer = PartWriter(root, rows_per_part=10, filesystem=filesystem)
    commit(writer, row("character", "Describe Ada.", card("Ada Quill").to_text()))
    store = open_store(root, filesystem)
    assert sync_cards(store).saved == ["characters/ada-quill.yaml"]
    assert run_cards(store) == [card("Ada Quill")]
    writer.close()


def test_a_run_without_character_rows_has_no_folder(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    assert sync_cards(store).saved == [] and run_cards(store) == []
    assert not (tmp_path / "characters").exists()
