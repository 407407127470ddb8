"""The category registry: instructor classes by name, discovered from the modules of this package."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from instructflow.instructors.base import Instructor

_REGISTRY: dict[str, type[Instructor]] = {}
_LOADED = False


def register(cls: type[Instructor]) -> type[Instructor]:
    """Class decorator: makes an instructor available under its `category` name."""
    existing = _REGISTRY.get(cls.category)
    if existing is not None and existing is not cls:
        raise ValueError(f"category {cls.category!r} registered twice ({existing.__module__}, {cls.__module__})")
    _REGISTRY[cls.category] = cls
    return cls


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    import instructflow.instructors as package

    for module in pkgutil.iter_modules(package.__path__):
        if not module.ispkg and not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    _LOADED = True


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
