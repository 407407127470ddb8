"""`rp`: multi-character role play. The generating call sets up scenes for a cast of 2-4 characters
(drawn from the run's character cards, those of `character` rows committed during the run included,
or invented in the same call when the run has too few) and
writes the user's opening line of each; each admitted scene is then played out in one answer call as
a `Name: text` transcript of a drawn number of turns, read and cleaned by `conversation.py`.

The user plays one of the characters (`user_plays: character`) or narrates the scene
(`user_plays: narrator`); the assistant plays every other character, several of whom may answer one
user turn. The row is a conversation (`Candidate.messages`): system prompt (scene and cast), then
alternating user and assistant messages whose text carries each speaker's `Name: ` marker, so the row
is already formatted (`skip_prompt_formatting`). A transcript that breaks format is rejected with a
named reason (`conversation.REASONS`).
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from instructflow.config import CategoryParams
from instructflow.instructors._textparse import labelled_lines
from instructflow.instructors.base import Instructor
from instructflow.instructors.categories._incharacter import describe, draw, invented, meta_cast
from instructflow.instructors.categories._shapes import rp_scenes, transcript
from instructflow.instructors.conversation import Cast, read_conversation, to_messages
from instructflow.instructors.record import Candidate
from instructflow.instructors.registry import register

NARRATOR = "Narrator"
_NARRATOR_ALIASES = ["Narration", "Narrative", "Scene", "Storyteller", "GM", "Game Master", "DM"]
_SETTINGS = [
    "a tense negotiation where each side wants something different",
    "an unexpected meeting while travelling",
    "a mystery that the characters try to untangle together",
    "a celebration that goes wrong",
    "a quiet evening conversation that turns to old secrets",
    "a rescue or escape under time pressure",
    "a first day at a new job, school or posting",
]


class RpParams(CategoryParams):
    references: ClassVar[tuple[str, ...]] = ("character",)  # cards committed during the run are played too

    batch_size: int = Field(2, ge=1, le=10, description="scenes set up in one generating call")
    min_characters: int = Field(2, ge=2, le=4, description="least characters in a scene")
    max_characters: int = Field(3, ge=2, le=4, description="most characters in a scene")
    min_turns: int = Field(
        4, ge=1, le=50, description="least user turns a kept conversation has (fewer is rejected)"
    )
    max_turns: int = Field(8, ge=1, le=50, description="most user turns asked for (more are cut)")
    user_plays: Literal["character", "narrator"] = Field(
        "character", description="the user plays one of the characters, or narrates the scene"
    )
    settings: list[str] = Field(
        default_factory=lambda: list(_SETTINGS), min_length=1, description="kinds of scene, one per call"
    )
    max_unknown_share: float = Field(
        0.34, ge=0, le=1, description="a larger share of turns by speakers outside the cast rejects the conversation"
    )
    max_tokens: int | None = Field(
        3000, ge=1, le=65536, description="overrides teacher.max_tokens: transcripts are long"
    )

    @model_validator(mode="after")
    def _ranges(self) -> RpParams:
        if self.min_characters > self.max_characters:
            raise ValueError("min_characters is larger than max_characters")
        if self.min_turns > self.max_turns:
            raise ValueError("min_turns is larger than max_turns: every conversation would be rejected")
        return self


@register
class Rp(Instructor):
    """Multi-character role play over several turns, the user playing a character or the narrator."""

    category = "rp"
    Params = RpParams
    variables = frozenset({"count", "topic", "setting", "cast", "size", "user_plays"})
    response_variables = frozenset({"scene", "cast", "speakers", "user", "user_plays", "opening", "turns"})
    skip_prompt_formatting = True
    params: RpParams

    def choose(self) -> dict[str, Any]:
        size = self.rng.randint(self.params.min_characters, self.params.max_characters)
        # The run's cards when there are enough for a scene (a smaller cast than drawn, if need be);
        # else the teacher invents each scene's cast in the same call.
        enough = len(self.cards) >= self.params.min_characters
        cast = draw(self.cards, min(size, len(self.cards)), self.rng) if enough else []
        return {
            **super().choose(), "setting": self.rng.choice(self.params.settings), "cast": cast,
            "size": size, "user_plays": self.params.user_plays,
        }

    def parse(self, reply: str, values: dict[str, Any]) -> list[Candidate]:
        out = []
        for scene, characters, opening in _scenes(reply):
            cast = values["cast"] or invented(characters, values["size"])
            if len(cast) < self.params.min_characters or not opening:
                continue
            user = NARRATOR if values["user_plays"] == "narrator" else cast[0]["name"]
            turns = self.rng.randint(self.params.min_turns, self.params.max_turns)
            meta = {"cast": cast, "user": user, "scene": scene, "turns": turns, "opening": opening}
            out.append(self.candidate(f"{user}: {opening}", topic=values["topic"],
                                      system=self._system(scene, cast, user), meta=meta))
        return out

    def grammar(self, call: str, values: dict[str, Any]) -> str | None:
        if call == "respond":  # the cast's names are the only speaker markers
            return transcript(values["user"], values["speakers"][1:], int(values["turns"]))
        self._initials = getattr(self, "_initials", None) or random.Random()
        return rp_scenes(values["count"], values["size"], not values["cast"], self._initials)

    def _system(self, scene: str, cast: list[dict[str, str]], user: str) -> str:
        """The row's system prompt: the scene, the cast, and who plays whom."""
        others = [p["name"] for p in cast if p["name"] != user]
        lines = [f"This is a role play. The scene: {scene}", "", "The characters:"]
        lines += [f"- {describe(p)}" for p in cast]
        who = "The user is the narrator: they describe what happens and what the characters notice." \
            if user == NARRATOR else f"The user plays {user}."
        lines += ["", f"{who} You play {', '.join(others)}: answer with one or more of their turns, each "
                  "starting with the character's name and a colon, actions between asterisks. Never write "
                  f"{user}'s lines, and stay in character."]
        text = "\n".join(lines)
        return f"{self.params.system_prompt}\n\n{text}" if self.params.system_prompt else text

    def response_values(self, candidate: Candidate) -> dict[str, Any]:
        cast = meta_cast(candidate.meta)
        user = candidate.meta["user"]
        speakers = [user, *(p["name"] for p in cast if p["name"] != user)]
        return {
            "scene": candidate.meta["scene"], "cast": cast, "speakers": speakers, "user": user,
            "user_plays": "narrator" if user == NARRATOR else "character",
            "opening": candidate.meta["opening"], "turns": candidate.meta["turns"],
        }

    def parse_response(self, reply: str, candidate: Candidate) -> str | None:
        """Reads the transcript into the row's messages; the response is the first answer.

        Raises:
            ConversationRejected: the transcript breaks format.
        """
        if not reply.strip():  # no answer at all: dropped as no_response, like any category
            return None
        meta = candidate.meta
        names = [p["name"] for p in meta_cast(meta)]
        aliases = {NARRATOR: _NARRATOR_ALIASES}
        cast = Cast(names, user=meta["user"], aliases=aliases)
        turns, _ = read_conversation(
            reply, cast, meta["opening"], min_exchanges=self.params.min_turns,
            max_exchanges=int(meta["turns"]), group_answers=True,
            max_unknown_share=self.params.max_unknown_share,
        )
        candidate.messages = to_messages(turns, cast, candidate.system, labelled=True)
        return next(m["content"] for m in candidate.messages if m["role"] == "assistant")


def _scenes(reply: str) -> list[tuple[str, str, str]]:
    """(scene, its CHARACTER lines, opening) for each SCENE of a generating reply; lines before the
    first SCENE (the start of a scene cut off) are ignored."""
    out: list[tuple[str, list[str], str]] = []
    for label, value in labelled_lines(reply, ["SCENE", "CHARACTER", "OPENING"]):
        if label == "SCENE":
            out.append((value, [], ""))
        elif out and label == "CHARACTER":
            out[-1][1].append(f"CHARACTER: {value}")
        elif out and label == "OPENING" and not out[-1][2]:
            out[-1] = (out[-1][0], out[-1][1], value)
    return [(scene, "\n".join(lines), opening) for scene, lines, opening in out if scene]
