"""What some tests need from the machine (a binary, mount privileges): without it they skip on a
workstation, but fail under CI, where a skipped test would let the suite pass without having run."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True when the `CI` environment variable is set (`CI=true bash .ci/run`)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skips the calling test for want of `reason`, or fails it when CI is set.

    Args:
        reason: what is missing and how to get it, e.g. "no `prometheus` binary on PATH (...)".
    """
    if in_ci():
        pytest.fail(f"{reason}; CI is set, so this fails instead of skipping", pytrace=False)
    pytest.skip(reason)
