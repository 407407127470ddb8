"""The PII scrubber on the labelled sample (tests/data/pii) and its three actions."""

import re

import pytest

from bench.bench_pii import PATTERN_ENTITIES, evaluate, load_sample
from instructflow.config import Pii
from instructflow.instructors.pii import Scrubber, count, scrub_inputs

REGIONS = Pii().phone_regions
# A little below what bench/bench_pii.py measured (docs/pii.md): patterns 1.000 precision and
# 0.988 recall over all 164 spans (phone 0.941, every other entity 1.000); person 0.652 / 0.909.
MIN_RECALL = {"phone": 0.90, "person": 0.85}
MIN_PRECISION = {"person": 0.60}


@pytest.fixture(scope="module")
def sample():
    return load_sample()


@pytest.mark.parametrize("entities", [PATTERN_ENTITIES, ["person"]], ids=["patterns", "person"])
def test_precision_and_recall_on_the_labelled_sample(sample, entities):
    scores, mistakes = evaluate(Scrubber(entities, "mask", REGIONS), sample)
    for entity, score in scores.items():
        assert score.tp + score.fn >= 20, f"the sample has too few {entity} spans to measure"
        assert score.recall >= MIN_RECALL.get(entity, 0.95), (entity, score, mistakes)
        assert score.precision >= MIN_PRECISION.get(entity, 0.95), (entity, score, mistakes)


def test_hard_negatives_stay_as_they_are(sample):
    scrubber = Scrubber(PATTERN_ENTITIES, "mask", REGIONS)
    negatives = [r["text"] for r in sample if r["kind"] == "negative"]
    changed = [(t, s) for t, (s, _) in zip(negatives, scrubber.scrub_many(negatives), strict=True) if s != t]
    assert len(negatives) >= 90 and not changed


def test_mask_puts_a_placeholder_per_entity_and_counts_them():
    text = ("Mail ana@example-firm.com or call (212) 555-0147; card 4111 1111 1111 1111, "
            "IBAN DE89 3704 0044 0532 0130 00, host 203.0.113.9, https://bob:s3cretpw@db.example.com/x")
    masked, findings = Scrubber(PATTERN_ENTITIES, "mask", REGIONS).scrub(text)
    assert masked == ("Mail <EMAIL> or call <PHONE>; card <CREDIT_CARD>, IBAN <IBAN>, host <IP_ADDRESS>, "
                      "https://<URL_SECRET>@db.example.com/x")
    assert count(findings) == {e: 1 for e in PATTERN_ENTITIES}


def test_replace_uses_fakes_that_belong_to_nobody_and_keeps_them_consistent():
    scrubber = Scrubber(PATTERN_ENTITIES, "replace", REGIONS)
    text = "Write to ana@example-firm.com; again: ana@example-firm.com. Server 203.0.113.9, card 4111-1111-1111-1111."
    replaced, findings = scrubber.scrub(text)
    assert len(findings) == 4 and "ana@example-firm.com" not in replaced and "203.0.113.9" not in replaced
    emails = re.findall(r"[\w.]+@example\.com", replaced)
    assert len(emails) == 2 and emails[0] == emails[1]  # the same value, the same fake
    assert re.search(r"Server 192\.0\.2\.\d+,", replaced)  # RFC 5737 documentation range
    assert re.search(r"card \d{4}-\d{4}-\d{4}-\d{3,4}\.", replaced)  # a published test number, same grouping
    assert scrubber.scrub(text)[0] == replaced  # consistent within one scrubber ...
    other = Scrubber(PATTERN_ENTITIES, "replace", REGIONS).scrub("Write to ana@example-firm.com")[0]
    assert other.startswith("Write to ") and other.endswith("@example.com")


def test_person_replace_gives_a_fake_name():
    replaced, findings = Scrubber(["person"], "replace", REGIONS).scrub("Minutes taken by Fatima Al-Sayed.")
    assert [f.entity for f in findings] == ["person"]
    assert "Fatima" not in replaced and re.fullmatch(r"Minutes taken by [A-Z]\w+ [A-Z][\w'-]+\.", replaced)


def test_drop_changes_nothing_and_inputs_with_pii_are_left_out():
    scrubber = Scrubber(["email", "ip_address"], "drop", REGIONS)
    text = "Ask ops@example-bank.com"
    assert scrubber.scrub(text) == (text, scrubber.find(text))
    kept, found = scrub_inputs(["Gardening", "Write to ops@example-bank.com", "Routing via 203.0.113.5"], scrubber)
    assert kept == ["Gardening"] and found == {"email": 1, "ip_address": 1}


def test_inputs_are_masked_under_mask():
    kept, found = scrub_inputs(["Billing for ops@example-bank.com", "Tides"], Scrubber(["email"], "mask", REGIONS))
    assert kept == ["Billing for <EMAIL>", "Tides"] and found == {"email": 1}


def test_unknown_entities_and_regions_are_named():
    with pytest.raises(ValueError, match="unknown.*'ssn'"):
        Scrubber(["email", "ssn"])
    with pytest.raises(ValueError, match="'XX'"):
        Scrubber(["phone"], phone_regions=["US", "XX"])


def test_config_section_validates():
    assert Pii().action == "mask" and "person" not in Pii().entities
    with pytest.raises(ValueError, match="ZZ"):
        Pii(phone_regions=["ZZ"])
    with pytest.raises(ValueError, match="entities"):
        Pii(entities=["email", "ssn"])
