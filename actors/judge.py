"""The judge stage's recipe: the judge chain, with a teacher client when the LLM judge is on."""

from __future__ import annotations

from instructflow.actors.core.judge import JudgeChain, JudgeStage
from instructflow.config import Config


def judge_stage(config: Config, base_url: str | None, output_uri: str | None = None) -> JudgeStage:
    """`output_uri`: the run's output location (batch mode records its batches there)."""
    teacher = None
    if config.judge.llm.enabled and base_url:
        from instructflow.actors.teacher import make_teacher

        teacher = make_teacher(config.teacher, base_url, scope=config.run_id, output_uri=output_uri)
    chain = JudgeChain(config.judge.rules, config.judge.llm, config.prompts_path, config.pii)
    return JudgeStage(chain, teacher)
