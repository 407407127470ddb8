"""The instructor categories: one module per category, each registered by name on import.

Importing this package imports every module in it, so a new category is one new file here (plus
its template in `prompts/`); nothing else in the pipeline changes.
"""

from __future__ import annotations

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.ispkg and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
