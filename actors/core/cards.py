"""The run's own character cards: ``<output>/characters/``, written from the committed `character` rows.

A `character` row's response is a card in its labelled text form (`Card.to_text`), so the committed
rows are the record and the folder is derived from them: `sync_cards` saves every committed card
that the folder lacks. The driver calls it when a run starts (a run killed before its end gets its
cards on resume) and after the run drains, so only committed cards are ever saved, each once, and a
later run reading the folder finds them. Saving goes through the output's `Store`, so it works on
object stores too. A card whose name (ignoring case and spacing) is already in the folder is not
saved again: the first committed card of a name wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from instructflow.actors.core.exports import read_part
from instructflow.actors.core.manifest import read_manifest
from instructflow.actors.core.storage import Store, is_temp_name
from instructflow.instructors.characters import (
    CARD_SUFFIXES,
    Card,
    CardError,
    free_file_name,
    parse_card,
)

CARDS_DIR = "characters"
CATEGORY = "character"


@dataclass
class CardSync:
    """What `sync_cards` did: the files it wrote, and the committed cards it left out (with why)."""

    saved: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def committed_cards(store: Store) -> tuple[list[Card], list[str]]:
    """The cards of the committed `character` rows, in commit order, and a note for each row whose
    response is not a card (there should be none: the category parses every card before it is a row)."""
    cards, bad = [], []
    for entry in read_manifest(store).entries:
        if CATEGORY not in entry.categories:
            continue
        table = read_part(store, entry, ["id", "category", "response"])
        for row_id, category, response in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True):
            if category != CATEGORY:
                continue
            card = Card.from_text(response or "")
            if card is None:
                bad.append(f"row {row_id}: its response is not a character card")
            else:
                cards.append(card)
    return cards, bad


def read_run_cards(store: Store) -> dict[str, Card | None]:
    """The files of ``characters/`` by name, each with its card (None when it is not a valid card)."""
    found: dict[str, Card | None] = {}
    for name in store.listdir(CARDS_DIR):
        if is_temp_name(name) or name.startswith(".") or not name.lower().endswith(CARD_SUFFIXES):
            continue
        try:
            found[name] = parse_card(store.read(f"{CARDS_DIR}/{name}"), store.display(f"{CARDS_DIR}/{name}"))
        except (CardError, UnicodeDecodeError):
            found[name] = None
    return found


def run_cards(store: Store) -> list[Card]:
    """The valid cards of the run's folder, in file-name order."""
    return [card for card in read_run_cards(store).values() if card is not None]


def sync_cards(store: Store) -> CardSync:
    """Saves each committed card the run's folder lacks, atomically, under a file name no other file
    has (one process at a time: the driver)."""
    result = CardSync()
    cards, result.skipped = committed_cards(store)
    existing = read_run_cards(store)
    for card in cards:
        try:
            name = free_file_name(card, existing)
        except CardError as exc:  # another card of this name is there: the first one stays
            result.skipped.append(f"{card.name!r}: {exc}")
            continue
        if name is None:
            continue  # already saved
        store.write_atomic(f"{CARDS_DIR}/{name}", [card.file_text().encode("utf-8")])
        existing[name] = card
        result.saved.append(f"{CARDS_DIR}/{name}")
    return result
