"""Character cards: the model, reading and validating a folder of card files, saving, the text form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instructflow.instructors.characters import (
    Card,
    CardError,
    load_cards,
    merge_cards,
    name_key,
    parse_card,
    save_card,
    slug,
)

WREN = {
    "name": "Wren Halloway",
    "description": "A ferry pilot on a cold northern lake who has crossed it twice a day for thirty years.",
    "personality": "Dry, patient and quietly kind; distrusts hurry.",
    "speech_style": "Short sentences, lake words, the odd proverb.",
    "stay_in_character": "Knows boats, weather and the villages on the shore; nothing of cities or computers.",
}


def card(**changes: object) -> Card:
    return Card.model_validate({**WREN, **changes})


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_and_json_cards_load_in_file_order(tmp_path: Path) -> None:
    write(tmp_path, "b.json", json.dumps({**WREN, "name": "Bram"}))
    write(tmp_path, "a.yaml", "\n".join(f"{k}: {v!r}" for k, v in WREN.items()) + "\nexample_lines: [Aye., Mind the swell.]\n")
    write(tmp_path, "notes.md", "not a card")  # other files are not cards
    write(tmp_path, ".hidden.yaml", "garbage: [")
    cards = load_cards(tmp_path)
    assert [c.name for c in cards] == ["Wren Halloway", "Bram"]
    assert cards[0].example_lines == ["Aye.", "Mind the swell."]


def test_an_unknown_key_names_the_file_the_key_and_its_line(tmp_path: Path) -> None:
    text = "\n".join(f"{k}: {v!r}" for k, v in WREN.items()) + "\nspeach: misspelt\n"
    path = write(tmp_path, "wren.yaml", text)
    with pytest.raises(CardError) as info:
        load_cards(tmp_path)
    assert f"{path}: speach (line 6): unknown key" in str(info.value)


def test_missing_and_empty_fields_are_each_named(tmp_path: Path) -> None:
    data = {k: v for k, v in WREN.items() if k != "personality"}
    path = write(tmp_path, "wren.json", json.dumps({**data, "name": "   "}))
    with pytest.raises(CardError) as info:
        load_cards(tmp_path)
    message = str(info.value)
    assert f"{path}: personality: Field required" in message
    assert f"{path}: name: String should have at least 1 character" in message


def test_every_bad_file_is_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: [unclosed")
    write(tmp_path, "b.json", "[1, 2]")
    with pytest.raises(CardError) as info:
        load_cards(tmp_path)
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"{tmp_path / 'a.yaml'}: not valid YAML")
    assert any(line.startswith(f"{tmp_path / 'b.json'}: a card file holds one mapping") for line in lines)


def test_duplicate_names_across_files_are_an_error_ignoring_case_and_spacing(tmp_path: Path) -> None:
    write(tmp_path, "a.json", json.dumps(WREN))
    write(tmp_path, "b.json", json.dumps({**WREN, "name": "  wren   HALLOWAY "}))
    with pytest.raises(CardError, match=r"b\.json: name: .* already used by .*a\.json"):
        load_cards(tmp_path)


def test_a_missing_folder_is_an_error_unless_allowed(tmp_path: Path) -> None:
    with pytest.raises(CardError, match="not a folder"):
        load_cards(tmp_path / "absent")
    assert load_cards(tmp_path / "absent", missing_ok=True) == []


def test_save_writes_a_file_that_loads_back_and_is_idempotent(tmp_path: Path) -> None:
    folder = tmp_path / "characters"
    wren = card(example_lines=["Aye."])
    path = save_card(folder, wren)
    assert path == folder / "wren-halloway.yaml"
    assert load_cards(folder) == [wren]
    assert save_card(folder, wren) == path  # the same card again: nothing new
    assert [p.name for p in folder.iterdir()] == ["wren-halloway.yaml"]  # no temporary file left


def test_save_never_overwrites_another_card(tmp_path: Path) -> None:
    save_card(tmp_path, card())
    # another character whose name makes the same file name gets a numbered one
    other = save_card(tmp_path, card(name="Wren-Halloway!"))
    assert other.name == "wren-halloway-2.yaml"
    # a different card with the same name (case and spacing ignored) is refused
    with pytest.raises(CardError, match="a different card named 'Wren Halloway'"):
        save_card(tmp_path, card(name="wren  halloway", personality="Loud."))
    write(tmp_path, "zed.yaml", "not: [valid")  # an unreadable file still keeps its name
    write(tmp_path, "zed-2.JSON", "{}")  # and so does another format of the same stem
    assert save_card(tmp_path, card(name="Zed")).name == "zed-3.yaml"


def test_text_form_round_trips_and_rejects_incomplete_text() -> None:
    wren = card(example_lines=["Aye.", "Mind the swell."])
    assert Card.from_text(wren.to_text()) == wren
    assert Card.from_text(wren.to_text().replace("PERSONALITY:", "Mood:")) is None
    assert Card.from_text(wren.to_text() + "\nNAME: Someone else") is None  # two cards run together
    assert Card.from_text("") is None


def test_system_prompt_carries_the_whole_card() -> None:
    wren = card(example_lines=["Mind the swell."])
    prompt = wren.system_prompt()
    for value in (*WREN.values(), "Mind the swell."):
        assert value in prompt
    assert prompt.startswith("You are Wren Halloway")


def test_names_slugs_and_merging() -> None:
    assert name_key("  Zoë   DU Pré ") == name_key("zoë du pré")
    assert slug("Zoë du Pré, the 3rd") == "zoe-du-pre-the-3rd"
    assert slug("东京") == "character"
    with pytest.raises(ValueError):
        parse_card("name: |\n  two\n  lines\n" + "".join(f"{k}: x\n" for k in list(WREN)[1:]), "x.yaml")
    user, run = [card(description="From the user.")], [card(name="WREN halloway"), card(name="Bram")]
    assert [(c.name, c.description) for c in merge_cards(user, run)] == [
        ("Wren Halloway", "From the user."),
        ("Bram", WREN["description"]),
    ]
