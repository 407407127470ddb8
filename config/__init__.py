"""The run configuration: the shipped YAML files (every knob commented) and the typed schema they
load into.

This package sits below every layer that uses a config: it imports no other instructflow package.
Categories register their options model in `params` when they are imported, so whoever loads a
config imports `instructflow.instructors.categories` first.
"""

from pathlib import Path

from instructflow.config.load import load_config, parse_config
from instructflow.config.params import CategoryParams, DerivedParams, params_for, register_params
from instructflow.config.schema import (
    Budget,
    Characters,
    Config,
    ConfigError,
    Embedded,
    Judge,
    Limits,
    LlmJudge,
    Novelty,
    Pii,
    Placement,
    Price,
    Queues,
    Rules,
    Run,
    TeacherBatch,
    TeacherConfig,
    Topics,
    Writer,
)

CONFIG_DIR = Path(__file__).resolve().parent

__all__ = [
    "CONFIG_DIR",
    "Budget",
    "CategoryParams",
    "DerivedParams",
    "Characters",
    "Config",
    "ConfigError",
    "Embedded",
    "Judge",
    "Limits",
    "LlmJudge",
    "Novelty",
    "Pii",
    "Placement",
    "Price",
    "Queues",
    "Rules",
    "Run",
    "TeacherBatch",
    "TeacherConfig",
    "Topics",
    "Writer",
    "load_config",
    "params_for",
    "parse_config",
    "register_params",
]
