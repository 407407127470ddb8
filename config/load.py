"""Loading a run config: YAML text into `Config`, with errors fit for a terminal.

Every error names the file, the key path and, where YAML gives it, the line. Validation runs before
Ray starts or any request is sent. Category options are checked against the models the categories
registered (`config.params`), so the categories must be imported before a config is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from instructflow.config.schema import Config, ConfigError


def _key_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number of a key path in YAML text (1-based), for error messages."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    line, node = key_node.start_mark.line + 1, value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _format_validation(path: str, text: str, exc: ValidationError) -> str:
    lines = [f"{path}: invalid configuration ({exc.error_count()} problem(s))"]
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) for p in loc) or "(top level)"
        line = _key_line(text, loc)
        where = f"{path}:{line}" if line else path
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see config/reference.yaml)"
        lines.append(f"  {where}: {key}: {msg}")
    return "\n".join(lines)


def parse_config(text: str, path: str = "<string>", overrides: dict[str, Any] | None = None) -> Config:
    """Parses YAML text into a `Config`; raises `ConfigError` naming the file, key and line."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (run, teacher, categories, ...)")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    try:
        config = Config.model_validate(data)
        config._source = path
        _resolve_files(config)
        return config
    except ValidationError as exc:
        raise ConfigError(_format_validation(path, text, exc)) from None
    except KeyError as exc:  # unknown category
        line = _key_line(text, ("categories", exc.args[0] if exc.args else ""))
        raise ConfigError(f"{path}:{line or '?'}: categories: {exc.args[-1]}") from None


def _resolve_files(config: Config) -> None:
    """Category options naming a file (`*_file`) become absolute, relative to the config file, so
    actors on other nodes or with another working directory read the same file."""
    for params in config.categories.values():
        for name in type(params).model_fields:
            value = getattr(params, name)
            if name.endswith("_file") and isinstance(value, str):
                object.__setattr__(params, name, str(config.resolve_path(value)))


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Loads and validates a config file; raises `ConfigError` with a message fit for the terminal."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    return parse_config(text, str(path), overrides)
