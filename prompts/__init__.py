"""Prompt templates (Jinja2, strict), one per instructor category, with recorded example replies."""

from pathlib import Path

PROMPTS_DIR = Path(__file__).resolve().parent
