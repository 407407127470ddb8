"""Per-category options: the base `CategoryParams` model and the registry of each category's model.

The config layer sits below the instructors, so it cannot look a category up in the instructor
registry. Instead the instructor registry records each category's `Params` model here when the
category registers itself; whoever loads a config first imports the categories
(`instructflow.instructors.categories`), and validation then finds their models here.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

_PARAMS: dict[str, type[CategoryParams]] = {}


class CategoryParams(BaseModel):
    """Options every category accepts; a category's own `Params` subclasses this."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(..., ge=1, le=100_000_000, description="accepted rows to produce")
    replicas: int = Field(1, ge=1, le=1024, description="instructor actors for this category")
    concurrency: int = Field(4, ge=1, le=1024, description="teacher calls in flight per replica")
    batch_size: int = Field(5, ge=1, le=100, description="items asked for in one generating call")
    language: str = Field("English", min_length=1, description="language of prompt and answer")
    readability: str | None = Field(None, description="e.g. 'a 12-year-old can follow it'")
    system_prompt: str | None = Field(None, description="system prompt stored with each row")
    temperature: float | None = Field(None, ge=0, le=2, description="overrides teacher.temperature")
    max_tokens: int | None = Field(
        None, ge=1, le=65536, description="overrides teacher.max_tokens for this category's calls"
    )
    max_continuations: int = Field(
        0, ge=0, le=8,
        description="an answer cut at max_tokens is continued by up to this many further calls "
        "(the cut answer is sent back with a request to go on); 0: it is rejected as truncated",
    )

    # Categories whose committed rows are read as they commit but not consumed: a category that plays
    # character cards lists `character`, and plays the cards committed during the run as well.
    references: ClassVar[tuple[str, ...]] = ()

    def consumes(self) -> tuple[str, ...]:
        """Categories whose committed rows this category reads (none for a first-round category)."""
        return ()

    def run_problems(self, categories: Collection[str], sections: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Problems with this category in the run: `(key, message)` pairs, the key one of these
        options. `categories` are the run's categories, `sections` its other validated sections."""
        return []


class DerivedParams(CategoryParams):
    """Options of a second-round category: one that consumes committed rows of `source_categories`
    (each source row is used at most once) and starts as soon as they commit rows."""

    batch_size: int = Field(1, ge=1, le=1, description="one source row per generating call")
    source_categories: list[str] = Field(
        ..., min_length=1, description="categories whose committed rows this category consumes"
    )

    def consumes(self) -> tuple[str, ...]:
        return (*dict.fromkeys(self.source_categories), *self.references)

    def run_problems(self, categories: Collection[str], sections: Mapping[str, Any]) -> list[tuple[str, str]]:
        if not set(self.source_categories) & set(categories):
            return [(
                "source_categories",
                f"none of {', '.join(self.source_categories)} is a category of this run, so no row "
                "could ever be consumed; add one of them under `categories` or change this list",
            )]
        return []


def register_params(category: str, params: type[CategoryParams]) -> None:
    """Records the options model of a category (called by the instructor registry)."""
    existing = _PARAMS.get(category)
    if existing is not None and existing is not params:
        raise ValueError(f"category {category!r} registered twice ({existing.__module__}, {params.__module__})")
    _PARAMS[category] = params


def params_for(category: str) -> type[CategoryParams]:
    """The options model of a registered category.

    Raises:
        KeyError: `(category, message)`, the message naming the known categories.
    """
    try:
        return _PARAMS[category]
    except KeyError:
        if not _PARAMS:
            message = (f"unknown category {category!r}; no category is registered "
                       "(import instructflow.instructors.categories before loading a config)")
        else:
            message = f"unknown category {category!r}; known: {', '.join(sorted(_PARAMS))}"
        raise KeyError(category, message) from None
