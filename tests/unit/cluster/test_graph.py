"""The stage graph is declared once; the queues, the drain order and the README's diagram follow."""

import subprocess
import sys
from pathlib import Path

from instructflow.cluster.graph import GRAPH
from instructflow.config import parse_config

ROOT = Path(__file__).resolve().parents[3]


def config():
    import instructflow.instructors.categories  # noqa: F401  (registers the categories)

    return parse_config("categories:\n  general: {count: 3}\n  trivia: {count: 2}\nqueues: {answer: 7}\n")


def test_queues_expand_per_category_edges_with_their_capacities():
    queues = GRAPH.queues(config())
    assert queues == {"novelty": 1024, "answer:general": 7, "answer:trivia": 7, "judge": 1024, "writer": 2048}


def test_a_drain_retires_orphaned_edges_first_then_closes_each_edge_after_its_feeders():
    order = GRAPH.drain_order()
    assert order == ["answer:{category}", "novelty", "judge", "writer"]
    assert GRAPH.orphaned("answer:{category}") and not GRAPH.orphaned("judge")
    assert GRAPH.feeders("judge") == ["instructor", "novelty"]


def test_the_readme_shows_the_graph_the_code_declares():
    printed = subprocess.run(
        [sys.executable, "-m", "instructflow.cluster.cli", "graph"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert printed == GRAPH.mermaid()
    assert f"```mermaid\n{printed}\n```" in (ROOT / "README.md").read_text()
