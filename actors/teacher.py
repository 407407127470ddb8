"""Builds the teacher client used inside actors: one cluster-wide limiter per (base_url, model),
and request events exported as metrics."""

from __future__ import annotations

from typing import Any

from instructflow.actors import metrics
from instructflow.actors.core.storage import open_store
from instructflow.actors.limiter import RemoteLimiter, teacher_gate
from instructflow.config import TeacherConfig
from instructflow.instructors.teacher.batch import BatchJournal
from instructflow.instructors.teacher.client import TeacherClient


def _observe(event: dict[str, Any]) -> None:
    labels = {"category": event.get("category", ""), "model": event.get("model", "")}
    metrics.inc("requests", 1, status_class=event.get("status_class", "error"), **labels)
    if event.get("latency_s") is not None:
        metrics.observe("request_latency_seconds", event["latency_s"], model=labels["model"])
    if event.get("prompt_tokens"):
        metrics.inc("prompt_tokens", event["prompt_tokens"], **labels)
    if event.get("completion_tokens"):
        metrics.inc("completion_tokens", event["completion_tokens"], **labels)


def make_teacher(
    teacher_config: TeacherConfig, base_url: str, scope: str = "", output_uri: str | None = None
) -> TeacherClient:
    """A TeacherClient sharing the cluster-wide rate limiter and budget of its run's endpoint. In
    `teacher.mode: batch` with an `output_uri` (the run's output location), its calls go through the
    Batch API, recorded under that location; without one (the driver's topics call) they stay sync."""
    t = teacher_config
    gate = teacher_gate(base_url, t.model, t.limits, t.budget, scope=scope)
    journal = BatchJournal(open_store(output_uri)) if t.mode == "batch" and output_uri else None
    return TeacherClient(teacher_config, RemoteLimiter(gate), base_url=base_url, observer=_observe, journal=journal)
