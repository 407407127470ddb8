"""Text for the stub teacher: a word list, and a perturbation that keeps a reply's layout while
changing what it is about.

The stub answers with recorded example replies (prompts/*.example.txt). Sent verbatim, every reply
would be a near-duplicate of the last and the pipeline's novelty stage would reject them all. So most
lower-case content words are swapped for words drawn from the list below, while everything a parser
relies on stays: labels in capitals (QUESTION:, BEGININPUT), JSON keys, YAML keys, markers such as
:evidence1:, list numbering, numbers, punctuation, code blocks, and small function words.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path


def _words(text: str) -> list[str]:
    return text.split()


NOUNS = _words(
    """
acorn alley almanac amber anchor antelope anvil apricot aqueduct arch archive atlas attic avalanche
badger bakery balcony ballad bamboo banner barley barn basil basket bazaar beacon beetle bellows
bicycle blacksmith blanket blizzard blossom boulder bracelet bramble brewery bridge bucket buffalo
cabin cactus calendar camel canal candle canoe canyon caravan cardigan carnival carrot cartographer
castle cathedral cavern cellar cello chalk chapel cheetah chestnut chimney cinnamon citadel clarinet
cliff clockwork cobblestone coconut comet compass copper coral cottage courtyard coyote crater crayon
cricket crocodile crossroads crystal cucumber cupboard cypress dairy dam delta desert diamond diary
dolphin dragonfly drizzle drum dune eagle easel eclipse elbow elevator embassy emerald engine estuary
falcon feather ferry fiddle fjord flamingo flint fountain fox freighter furnace galaxy gallery garlic
geyser glacier glove goblet gondola gorilla granary granite greenhouse guitar gymnasium hammock harbor
harp harvest hazelnut hedgehog helmet hermit heron highway hive honey horizon hourglass iceberg igloo
inkwell island ivory jacket jaguar jasmine jellyfish jetty jigsaw journal jungle kayak kettle kiln
kite koala labyrinth ladder lagoon lantern lava lemon library lighthouse lily limestone lobster locket
locomotive loom lute magnet mandolin mango maple marble market marsh meadow meteor microscope mill
mineral mirror monastery monsoon mosaic moss moth mountain mushroom needle nest nightingale notebook
nutmeg oak oasis observatory octopus olive orchard orchestra ostrich otter owl oyster paddle pagoda
palace pancake panther papyrus parachute parrot pasture peacock pebble pelican pendulum penguin pepper
pharmacy piano pier pigeon pilgrim pine pistachio plateau plum porcupine porridge postcard pottery
prairie prism pudding pumpkin puppet quarry quill quilt rabbit raccoon radish rainbow raft raven reef
rhubarb ribbon riverbank robot rooftop saddle saffron sailboat salamander sandal satchel saxophone
scarecrow scroll seagull sextant shipyard shovel sickle silk skyscraper sled snail snowflake sparrow
spindle sponge squirrel stadium starfish steeple stethoscope submarine sunflower swamp swan tambourine
tapestry telescope terrace thimble thistle thunderstorm tiger timber toboggan tortoise tractor tram
trellis trombone trumpet tulip tundra tunnel turbine turnip typewriter umbrella valley vase velvet
vineyard violin volcano wagon walnut walrus wardrobe waterfall weasel whale wheelbarrow whistle willow
windmill wolf workshop wren yak yarn zebra zeppelin
"""
)

ADJECTIVES = _words(
    """
ancient amber bitter blazing brisk bumpy busy calm candid cheerful chilly clumsy cosy crimson crisp
curious damp dazzling dim distant dusty eager early elegant fierce fragile frosty gentle giant gloomy
golden graceful greasy hollow humble icy idle jagged jolly keen lanky lively lofty lonely loud lucky
marble mellow misty modest muddy narrow nimble noisy odd orange pale peculiar plump polished proud
quaint quick quiet rapid restless rocky rosy rough rusty salty scarlet shabby shiny silent silver
sleepy slender sly smoky snowy soggy solemn sour sparkling speckled spicy steep sticky stormy striped
sturdy sunny swift tangled tart tidy tiny tranquil twisted velvet vivid wandering wary weary wild
windy wintry wise wobbly wooden woolly young zesty
"""
)

VERBS = _words(
    """
admire anchor balance borrow braid build carve carry chase collect compare cook count decorate design
dig drift echo explore fetch fold gather glide guard hammer harvest hum inspect juggle knit launch
measure melt mend navigate paint plant polish pour pull question repair rescue roast sail scatter
sculpt sew shelter sketch slice sort spin sprinkle stack steer stir sweep tend trade travel tune
unfold wander wash weave whisper wrap
"""
)

VOCAB = sorted(set(NOUNS) | set(ADJECTIVES) | set(VERBS))

# Small words kept as they are: they carry the grammar, not the topic, and some are values parsers
# look for (VERDICT: accept, JSON true/false/null).
KEEP = frozenset(
    _words(
        """
    a an the and or but nor so yet for of to in on at by with from into onto over under about above
    below after before between through during without within against among around across along
    is are was were be been being am do does did done has have had having can could will would shall
    should may might must not no yes this that these those it its they them their there here he him
    his she her we us our you your i me my who whom whose which what when where why how all any each
    every some many much more most few less least other such only own same than too very just also
    as if then else because while until once again ever never always often each both either neither
    one two three four five six seven eight nine ten first second third last next new old
    accept reject true false null none yes no ok
    def return import class self print lambda elif while pass break continue try except finally raise
    yield async await const let var function int str float bool list dict set len range
        """
    )
)

_PROTECTED = re.compile(
    r"```.*?```"  # fenced code
    r"|`[^`\n]*`"  # inline code
    r"|https?://\S+"  # links
    r'|"[^"\n]*"(?=\s*:)'  # JSON keys
    r"|^[ \t]*(?:[-*][ \t]+)?[A-Za-z_][\w-]*(?:[ \t][\w-]+){0,2}[ \t]*:(?=\s|$)"  # labels, YAML keys
    r"|:[A-Za-z0-9_]+:"  # markers such as :evidence1:
    r"|<[^<>\n]{1,40}>"  # tags such as <instruction>
    r"|\{\{.*?\}\}|\{[A-Za-z_][\w.]*\}"  # placeholders
    r"|\w+\[[^\]\n]*\]",  # tool calls such as Search[query]
    re.DOTALL | re.MULTILINE,
)
_WORD = re.compile(r"[A-Za-z0-9_']+")


def _keep_word(word: str, before: str, after: str) -> bool:
    if len(word) <= 2 or word.lower() in KEEP:
        return True
    if not word.isalpha() and not word.replace("'", "").isalpha():
        return True  # digits, underscores: identifiers and numbers
    if word.isupper() or not (word.islower() or word.istitle()):
        return True  # labels in capitals, camelCase identifiers
    if after[:1] in "(/@." and after[1:2].isalnum() or after[:1] == "(":
        return True  # calls, paths, dotted names
    return before[-1:] in "./@#$\\_"


def _swap(word: str, rng: random.Random) -> str:
    new = rng.choice(VOCAB)
    return new.capitalize() if word[:1].isupper() else new


def perturb(text: str, rng: random.Random, p: float = 0.9) -> str:
    """A copy of `text` with about `p` of its content words replaced; the layout is untouched."""
    out: list[str] = []
    last = 0
    for span in _PROTECTED.finditer(text):
        out.append(_perturb_plain(text, last, span.start(), rng, p))
        out.append(span.group(0))
        last = span.end()
    out.append(_perturb_plain(text, last, len(text), rng, p))
    return "".join(out)


def _perturb_plain(text: str, start: int, end: int, rng: random.Random, p: float) -> str:
    piece = text[start:end]

    def replace(match: re.Match[str]) -> str:
        word = match.group(0)
        before = text[max(0, start + match.start() - 1) : start + match.start()]
        after = text[start + match.end() : start + match.end() + 2]
        if _keep_word(word, before, after) or rng.random() >= p:
            return word
        return _swap(word, rng)

    return _WORD.sub(replace, piece)


def _third_person(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def sentence(rng: random.Random) -> str:
    """One plain sentence of made-up content."""
    noun, other, place = rng.sample(NOUNS, 3)
    adj, adj2 = rng.sample(ADJECTIVES, 2)
    verb = _third_person(rng.choice(VERBS))
    patterns = (
        f"The {adj} {noun} {verb} the {other} near the {place}.",
        f"Every {noun} in the {adj} {place} {verb} a {adj2} {other}.",
        f"Because the {other} is {adj}, the {noun} {verb} it slowly.",
        f"A {adj2} {noun} rarely {verb} anything beside the {place}.",
        f"Nobody expected the {noun} to {rng.choice(VERBS)} a {adj} {other} before dawn.",
    )
    return rng.choice(patterns)


def paragraph(rng: random.Random, min_sentences: int = 2, max_sentences: int = 5) -> str:
    """A paragraph of 2 to 5 varied sentences."""
    return " ".join(sentence(rng) for _ in range(rng.randint(min_sentences, max_sentences)))


def topic(rng: random.Random) -> str:
    """A made-up topic such as "Restless lanterns" or "The history of kayaks and quills"."""
    noun, other = rng.sample(NOUNS, 2)
    patterns = (
        f"{rng.choice(ADJECTIVES)} {noun}s",
        f"the history of the {noun}",
        f"{noun} and {other} care",
        f"how to {rng.choice(VERBS)} a {noun}",
        f"{noun} {other} festivals",
    )
    text = rng.choice(patterns)
    return text[0].upper() + text[1:]


def topic_list(rng: random.Random, count: int) -> str:
    """A numbered list of `count` made-up topics."""
    return "\n".join(f"{i}. {topic(rng)}" for i in range(1, count + 1))


# "Write 5 trivia questions", "Make up 3 original riddles": how many items a generating prompt asks for.
_REQUESTED = re.compile(r"\b(?:Write|Make up|Invent|Imagine|Think of|List)\s+(\d{1,3})\b")
_LABEL = re.compile(r"[A-Z][A-Z ]*\d*:")
_NUMBERED = re.compile(r"\d+\.\s")


def requested_count(prompt: str) -> int | None:
    """The item count a generating prompt asks for, when it says so in the packaged wording."""
    match = _REQUESTED.search(prompt)
    return int(match.group(1)) if match and int(match.group(1)) > 0 else None


def split_items(example: str) -> tuple[list[list[str]], bool] | None:
    """The example split into its repeated items (label blocks or a numbered list), or None."""
    lines = example.splitlines()
    label = _LABEL.match(lines[0]) if lines else None
    numbered = bool(lines) and _NUMBERED.match(lines[0]) is not None
    if not (label or numbered):
        return None
    items: list[list[str]] = []
    for line in lines:
        starts = line.startswith(label.group(0)) if label else _NUMBERED.match(line) is not None
        if starts or not items:
            items.append([])
        items[-1].append(line)
    return (items, numbered) if len(items) > 1 else None


def fit_count(example: str, count: int) -> str:
    """The example with its items cycled or cut to `count`, as a teacher asked for `count` would
    answer; an example that is not a list of like items comes back unchanged."""
    found = split_items(example)
    if found is None:
        return example
    items, numbered = found
    out: list[str] = []
    for i in range(count):
        lines = list(items[i % len(items)])
        if numbered:
            lines[0] = _NUMBERED.sub(f"{i + 1}. ", lines[0], count=1)
        out.extend(lines)
    return "\n".join(out)


_FROM_PROMPT = re.compile(r"\{\{prompt:([A-Z][A-Z0-9 ]{0,30})\|([^{}|\n]*)\}\}")


def fill_from_prompt(text: str, prompt: str) -> str:
    """The example with each `{{prompt:LABEL|default}}` replaced by the value of the prompt's line
    `LABEL: value` (its first such line), else by `default`: a teacher repeats the names it was
    given, so the role-play transcripts speak with the cast the prompt lists (`SPEAKER 1: Mira`)."""

    def value(match: re.Match[str]) -> str:
        line = re.search(rf"^[ \t]*{re.escape(match.group(1))}:[ \t]*(\S.*?)[ \t]*$", prompt, re.MULTILINE)
        return line.group(1) if line else match.group(2)

    return _FROM_PROMPT.sub(value, text)


def _editor_correction(prompt: str) -> str | None:
    """An `editor` prompt answered as a proofreader would: the damaged text between its TEXT markers
    with the mechanical damage undone (`editing.proofread`), in the layout the category reads. A
    recorded correction could not do: the stub would have to know each source row's original."""
    from instructflow.instructors.derived import marked_text
    from instructflow.instructors.editing import proofread

    text = marked_text(prompt, "TEXT")
    return None if text is None else f"CORRECTED:\n{proofread(text)}\nEND CORRECTED"


# Replies the stub works out from the prompt instead of perturbing a recorded one: (category, call).
LEARNED: dict[tuple[str, str], Callable[[str], str | None]] = {
    ("editor", "generate"): _editor_correction,
}


class ReplyWriter:
    """Chooses and writes the content of one stub reply (see `stub` for the lookup order)."""

    def __init__(self, prompts_dir: Path, history_size: int = 200) -> None:
        self.prompts_dir = prompts_dir
        self.history_size = history_size
        self._examples: dict[str, str | None] = {}
        self._history: dict[tuple[str, str], list[str]] = {}

    def content(
        self, category: str, call: str, prompt: str, rng: random.Random, *, wrong_format: bool, duplicate: bool
    ) -> tuple[str, str]:
        """The reply text and what it is: "example", "p_wrong_format" or "p_duplicate"."""
        history = self._history.setdefault((category, call), [])
        if wrong_format:
            return paragraph(rng), "p_wrong_format"
        if duplicate and history:
            return rng.choice(history), "p_duplicate"
        learned = LEARNED.get((category, call))
        text = learned(prompt) if learned is not None else None
        example = self.example_for(category, call)
        if text is not None:  # worked out from the prompt
            example = None
        elif example is not None:
            wanted = requested_count(prompt) if call == "generate" else None
            text = fill_from_prompt(perturb(fit_count(example, wanted) if wanted else example, rng), prompt)
        elif call == "topics":
            numbers = [int(n) for n in re.findall(r"\b(\d{1,3})\b", prompt) if 0 < int(n) <= 500]
            text = topic_list(rng, numbers[0] if numbers else 20)
        else:
            text = paragraph(rng)
        history.append(text)
        del history[: -self.history_size]
        return text, "example"

    def example_for(self, category: str, call: str) -> str | None:
        """The recorded example reply for (category, call), or None."""
        names = [f"{category}.{call}"]
        if call == "generate":
            names.append(category)
        if call == "judge_conversation":  # the LLM judge's call for a whole conversation
            names.append("judge.conversation")
        if call in ("judge", "judge_conversation"):
            names.append("judge")
        for name in names:
            if not re.fullmatch(r"[\w-]+(\.[\w-]+)?", name):
                continue  # header values never become path tricks
            if name not in self._examples:
                path = self.prompts_dir / f"{name}.example.txt"
                self._examples[name] = path.read_text(encoding="utf-8").strip() if path.is_file() else None
            if self._examples[name] is not None:
                return self._examples[name]
        return None
