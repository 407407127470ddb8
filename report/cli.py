"""The `instructflow report` subcommand (registered by cluster/cli.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_INPUT = 2  # an input the report cannot use, like a bad config for `generate`


def add_parser(sub: Any) -> None:
    """Adds `report` to the command line's subparsers."""
    r = sub.add_parser(
        "report", help="describe a finished run: an HTML page, PNG plots and figures.json (docs/report.md)"
    )
    r.add_argument("output_dir", help="the run's output directory (run.output_dir)")
    r.add_argument(
        "--compare", metavar="FILE",
        help="a reference set measured side by side: JSONL (Self-Instruct seed tasks, Alpaca, ShareGPT, "
        "airoboros, instruction/response) or another output directory",
    )
    r.add_argument("--to", metavar="DIR", default=None, help="where to write (default: OUTPUT_DIR/report)")
    r.add_argument(
        "--no-embed-compare", action="store_true",
        help="do not embed the reference set (its embedding measures are then left out)",
    )
    r.add_argument(
        "--threshold", type=float, default=None,
        help="cosine similarity that joins near-duplicates (default: the run's novelty.threshold)",
    )
    r.add_argument("--clusters", type=int, default=10, help="how many of the largest clusters to show")
    r.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """Writes the report and prints where the page is."""
    from instructflow.report.build import write_report
    from instructflow.report.data import ReportError

    if args.threshold is not None and not 0 < args.threshold <= 1:
        print(f"instructflow: --threshold must be in (0, 1], got {args.threshold}", file=sys.stderr)
        return EXIT_INPUT
    try:
        report = write_report(
            args.output_dir, args.to, args.compare, embed_compare=not args.no_embed_compare,
            threshold=args.threshold, top_clusters=max(1, args.clusters),
        )
    except ReportError as exc:
        print(f"instructflow: {exc}", file=sys.stderr)
        return EXIT_INPUT
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(report.page)
    return 0
