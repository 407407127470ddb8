"""Run configurations shipped with instructflow (YAML, every knob commented)."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent
