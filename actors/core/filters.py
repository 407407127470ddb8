"""Which committed rows an export or a merge takes: categories in or out, and a minimum judge score."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class RowFilter:
    """A row passes when its category is included (or no `include` is given), is not excluded, and
    its judge score reaches `min_score`. Rows without a score (the LLM judge was off) fail any
    `min_score`: a threshold on a score that does not exist cannot be said to be met.

    Attributes:
        include: categories to keep; empty keeps every category.
        exclude: categories to drop.
        min_score: lowest judge score (0-10) a row may have; None keeps rows whatever their score.

    Raises:
        ValueError: a category is both included and excluded, or `min_score` is outside 0-10.
    """

    include: frozenset[str] = field(default_factory=frozenset)
    exclude: frozenset[str] = field(default_factory=frozenset)
    min_score: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "include", frozenset(self.include))
        object.__setattr__(self, "exclude", frozenset(self.exclude))
        both = self.include & self.exclude
        if both:
            raise ValueError(f"categories both included and excluded: {sorted(both)}")
        if self.min_score is not None and not 0 <= self.min_score <= 10:
            raise ValueError(f"min_score must be between 0 and 10, not {self.min_score}")

    @property
    def active(self) -> bool:
        """True when the filter can drop a row."""
        return bool(self.include or self.exclude) or self.min_score is not None

    def keeps_category(self, category: str) -> bool:
        """Whether rows of `category` can pass (the score still decides row by row)."""
        return (not self.include or category in self.include) and category not in self.exclude

    def check(self, categories: Iterable[str], where: str) -> None:
        """Raises ValueError when the filter names a category that `where` does not hold: a typo
        would otherwise silently export nothing (or everything)."""
        known = set(categories)
        unknown = sorted((self.include | self.exclude) - known)
        if unknown:
            raise ValueError(f"{where} has no category {', '.join(unknown)} (it has: {', '.join(sorted(known)) or 'none'})")

    def apply(self, table: pa.Table) -> pa.Table:
        """The rows of `table` that pass (it needs ``category``, and ``score`` when `min_score` is set)."""
        if not self.active or table.num_rows == 0:
            return table
        return table.filter(self.mask(table))

    def mask(self, table: pa.Table) -> pa.Array:
        """One boolean per row of `table`: True when the row passes."""
        keep = pa.array([True] * table.num_rows, type=pa.bool_())
        category = table.column("category")
        if self.include:
            keep = pc.and_(keep, pc.is_in(category, pa.array(sorted(self.include), type=pa.string())))
        if self.exclude:
            keep = pc.and_(keep, pc.invert(pc.is_in(category, pa.array(sorted(self.exclude), type=pa.string()))))
        if self.min_score is not None:
            passed = pc.greater_equal(table.column("score"), pa.scalar(self.min_score, pa.float32()))
            keep = pc.and_(keep, pc.fill_null(passed, False))
        return keep.combine_chunks() if isinstance(keep, pa.ChunkedArray) else keep

    def describe(self) -> str:
        """The filter in words, for dataset cards and summaries ("every row" when inactive)."""
        parts = []
        if self.include:
            parts.append(f"categories {', '.join(sorted(self.include))}")
        if self.exclude:
            parts.append(f"without categories {', '.join(sorted(self.exclude))}")
        if self.min_score is not None:
            parts.append(f"judge score >= {self.min_score:g}")
        return "; ".join(parts) or "every row"

    def to_json(self) -> dict[str, object]:
        """Plain data (sorted lists), stable across runs, for records such as ``merge.json``."""
        return {"include": sorted(self.include), "exclude": sorted(self.exclude), "min_score": self.min_score}
