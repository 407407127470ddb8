"""The category registry: instructor classes by name, discovered from the modules of `categories`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from instructflow.config.params import register_params

if TYPE_CHECKING:
    from instructflow.instructors.base import Instructor

_REGISTRY: dict[str, type[Instructor]] = {}


def register(cls: type[Instructor]) -> type[Instructor]:
    """Class decorator: makes an instructor available under its `category` name."""
    existing = _REGISTRY.get(cls.category)
    if existing is not None and existing is not cls:
        raise ValueError(f"category {cls.category!r} registered twice ({existing.__module__}, {cls.__module__})")
    register_params(cls.category, cls.Params)  # so that a config can check this category's options
    _REGISTRY[cls.category] = cls
    return cls


def _load_all() -> None:
    importlib.import_module("instructflow.instructors.categories")  # registers every category


def categories() -> list[str]:
    """Names of every registered category, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get_instructor(name: str) -> type[Instructor]:
    """The instructor class for a category; KeyError names the known categories."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(name, f"unknown category {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None
