from __future__ import annotations

import random
from pathlib import Path

import pytest

import instructflow.instructors.categories  # noqa: F401  (registers the categories a config names)
from instructflow.cluster.driver import preflight
from instructflow.config import ConfigError, load_config
from instructflow.instructors.characters import Card
from instructflow.instructors.registry import get_instructor


def character(cards: list[Card] | None = None, **params):
    cls = get_instructor("character")
    return cls(cls.Params(count=3, **params), topics=["lakes"], rng=random.Random(0), cards=cards)


def test_each_card_is_a_row_whose_response_reads_back_as_the_card(recorded) -> None:
    instr = character()
    cands = instr.parse(recorded("character"), instr.choose())
    assert [c.meta["card"] for c in cands] == ["Wren Halloway", "Pim Ostrander", "Cornelius Vane"]
    first = cands[0]
    assert first.instruction.startswith("I'd like a character card for an old ferry pilot")
    card = Card.from_text(first.response)
    assert card is not None and card.name == "Wren Halloway"
    assert card.speech_style.startswith("Short sentences") and len(card.example_lines) == 3
    assert all(not c.needs_response for c in cands)  # one call makes the whole row


def test_names_already_taken_are_shown_and_their_cards_dropped(recorded) -> None:
    taken = Card.from_text(
        "NAME: wren  HALLOWAY\nDESCRIPTION: x\nPERSONALITY: x\nSPEECH STYLE: x\nSTAY IN CHARACTER: x"
    )
    instr = character([taken])
    values = instr.choose()
    assert values["taken_names"] == "wren HALLOWAY"
    assert "already taken" in instr.template.render({**instr.common_values(), **values})
    assert [c.meta["card"] for c in instr.parse(recorded("character"), values)] == ["Pim Ostrander", "Cornelius Vane"]
    # what this replica produced is taken too: the same reply again gives nothing
    assert instr.parse(recorded("character"), values) == []
    assert set(instr.choose()["taken_names"].split(", ")) == {"wren HALLOWAY", "Pim Ostrander", "Cornelius Vane"}
    assert character([taken], max_names_shown=0).choose()["taken_names"] == ""


def test_incomplete_or_thin_cards_are_dropped(recorded) -> None:
    text = recorded("character")
    blocks = ["REQUEST:" + b for b in text.split("REQUEST:")[1:]]
    no_stay = "\n".join(line for line in blocks[0].splitlines() if not line.startswith("STAY IN CHARACTER"))
    no_request = "\n".join(blocks[1].splitlines()[1:])
    thin = blocks[2].replace(blocks[2].split("DESCRIPTION: ")[1].split("\n")[0], "A magician.")
    instr = character()
    assert instr.parse("\n".join([no_stay, no_request, thin]), instr.choose()) == []
    assert len(instr.parse(thin, instr.choose())) == 0
    assert len(character(min_description_words=2).parse(thin, instr.choose())) == 1


def test_a_bad_card_in_the_users_folder_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "wren.yaml").write_text("name: Wren\ndescription: d\npersonality: p\nspeech_style: s\nstay: oops\n")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("teacher: {api_key_env: null}\ncharacters: {dir: cards}\ncategories:\n  awareness: {count: 1}\n")
    with pytest.raises(ConfigError) as err:
        preflight(load_config(cfg))
    message = str(err.value)
    assert "characters.dir" in message and f"{cards / 'wren.yaml'}: stay (line 5): unknown key" in message
    assert f"{cards / 'wren.yaml'}: stay_in_character: Field required" in message
