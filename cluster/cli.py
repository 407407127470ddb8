"""The `instructflow` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import yaml

from instructflow.config import CONFIG_DIR, Config, ConfigError, Embedded, load_config
from instructflow.report import cli as report_cli

EXIT_CONFIG = 2
EXIT_RUN = 1


def _overrides(pairs: list[str]) -> dict[str, Any]:
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE (e.g. run.output_dir=out/x), got {pair!r}")
        result[key] = yaml.safe_load(value)
    return result


def _load_config(args: argparse.Namespace) -> Config:
    """The run config named on the command line, with the categories it names registered first."""
    import instructflow.instructors.categories  # noqa: F401  (registers each category's options)

    return load_config(args.config, _overrides(args.set))


def cmd_generate(args: argparse.Namespace) -> int:
    from instructflow.cluster.driver import run

    config = _load_config(args)
    if args.display:
        config.run.display = args.display
    progress = run(config, args.address, allow_config_change=args.allow_config_change)
    short = [c for c in progress.targets if not progress.done(c)]
    if short:
        why = "the teacher budget is spent (teacher.budget); " if "budget" in progress.outcomes else ""
        counts = ", ".join(f"{c} {progress.committed[c]}/{progress.targets[c]}" for c in short)
        print(f"instructflow: {why}ended before every target was met: {counts} rows committed", file=sys.stderr)
        return EXIT_RUN
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from instructflow.cluster.driver import preflight

    config = _load_config(args)
    preflight(config)
    print(f"{args.config}: OK (run id {config.run_id}, {config.total_target()} rows in {len(config.categories)} categories)")
    return 0


def cmd_serve_teacher(args: argparse.Namespace) -> int:
    from instructflow.actors.teacher_serve import serve_forever
    from instructflow.cluster.quiet import prepare_ray

    prepare_ray(starts_cluster=not os.environ.get("RAY_ADDRESS"))  # serve_forever starts a local Ray then
    serve_forever(Embedded(port=args.port, parallel=args.parallel, threads=args.threads))
    return 0


def _row_filter(args: argparse.Namespace) -> Any:
    from instructflow.actors.core.filters import RowFilter

    try:
        return RowFilter(set(args.include_category), set(args.exclude_category), args.min_score)
    except ValueError as exc:
        raise SystemExit(f"instructflow: {exc}") from None


def _filter_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--include-category", action="append", default=[], metavar="NAME", help="keep only these categories")
    p.add_argument("--exclude-category", action="append", default=[], metavar="NAME", help="drop these categories")
    p.add_argument("--min-score", type=float, default=None, help="drop rows whose judge score is lower (or missing)")


def cmd_export(args: argparse.Namespace) -> int:
    from collections import Counter

    from instructflow.actors.core.exports import export_dataset
    from instructflow.actors.core.storage import OutputError

    skipped: Counter[str] = Counter()
    try:
        paths = export_dataset(
            args.output_dir, args.format, where=_row_filter(args), to=args.to, license=args.license, skipped=skipped
        )
    except (ValueError, OutputError) as exc:
        raise SystemExit(f"instructflow: {exc}") from None
    for path in paths:
        print(path)
    for fmt, n in sorted(skipped.items()):
        print(f"{fmt}: skipped {n} multi-turn row(s); the format has no turns (docs/output.md, Exports)")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from instructflow.actors.core.merge import merge, parse_inputs
    from instructflow.actors.core.storage import OutputError

    try:
        summary = merge(parse_inputs(args.inputs), args.out, where=_row_filter(args), threshold=args.threshold)
    except (ValueError, OutputError) as exc:
        raise SystemExit(f"instructflow: {exc}") from None
    resumed = f", {summary.resumed_parts} input parts done by an earlier call" if summary.resumed_parts else ""
    print(
        f"{summary.out}: {summary.kept:,} of {summary.rows:,} rows kept in {summary.parts} parts "
        f"(dropped: {summary.exact:,} exact, {summary.near:,} near duplicates, {summary.filtered:,} filtered; "
        f"{summary.reembedded:,} re-embedded{resumed}) in {summary.seconds:.1f} s"
    )
    for label, kept in summary.kept_by_source.items():
        print(f"  {label:24} {kept:>10,} rows")
    return 0


def cmd_categories(args: argparse.Namespace) -> int:
    from instructflow.instructors.registry import categories, get_instructor

    for name in categories():
        doc = (get_instructor(name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:28} {doc}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from instructflow.cluster import init

    return init.run(args)


def cmd_doctor(args: argparse.Namespace) -> int:
    from instructflow.cluster import doctor

    return doctor.run(args, _overrides(args.set))


def cmd_graph(args: argparse.Namespace) -> int:
    from instructflow.cluster.graph import GRAPH

    print(GRAPH.mermaid())
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="instructflow", description="Synthetic instruction data on Ray.")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="run a generation job")
    g.add_argument("--config", default=str(CONFIG_DIR / "quickstart.yaml"), help="YAML run config")
    g.add_argument("--address", default=None, help="Ray address to join (default: start a local Ray)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    g.add_argument("--display", choices=["auto", "live", "plain", "off"], default=None)
    g.add_argument(
        "--allow-config-change", action="store_true",
        help="add rows to an output directory made with a different config",
    )
    g.set_defaults(func=cmd_generate)

    v = sub.add_parser("validate", help="check a config and its templates without starting anything")
    v.add_argument("--config", default=str(CONFIG_DIR / "quickstart.yaml"))
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    v.set_defaults(func=cmd_validate)

    s = sub.add_parser("serve-teacher", help="serve the embedded teacher model on 127.0.0.1")
    s.add_argument("--port", type=int, default=8011)
    s.add_argument("--parallel", type=int, default=2)
    s.add_argument("--threads", type=int, default=2)
    s.set_defaults(func=cmd_serve_teacher)

    e = sub.add_parser("export", help="write trainer-ready exports (JSONL formats, a Hugging Face folder) of a run")
    e.add_argument("output_dir")
    e.add_argument(
        "--format", action="append", default=None,
        choices=["jsonl", "sharegpt", "alpaca", "airoboros-2.0", "openai-chat", "hf"],
        help="repeatable; default: jsonl, sharegpt and alpaca (docs/output.md)",
    )
    _filter_options(e)
    e.add_argument("--to", default=None, metavar="DIR", help="write under DIR instead of the run's own folder")
    e.add_argument("--license", default="other", help="license id the hf dataset card declares (default: other)")
    e.set_defaults(func=cmd_export)

    m = sub.add_parser("merge", help="merge datasets into one, dropping rows they share (docs/datasets.md)")
    m.add_argument("inputs", nargs="+", metavar="[NAME=]DIR", help="output directories, earlier ones win ties")
    m.add_argument("--out", required=True, help="the new merged directory (rerun the same command to resume)")
    _filter_options(m)
    m.add_argument("--threshold", type=float, default=None, help="near-duplicate cosine (default: the inputs' lowest)")
    m.set_defaults(func=cmd_merge)

    c = sub.add_parser("categories", help="list the instructor categories")
    c.set_defaults(func=cmd_categories)

    gr = sub.add_parser("graph", help="print the pipeline's stage graph as a Mermaid flowchart")
    gr.set_defaults(func=cmd_graph)

    from instructflow.cluster.init import add_arguments as init_arguments

    i = sub.add_parser("init", help="write a commented config for your own teacher (asks, or takes flags)")
    init_arguments(i)
    i.set_defaults(func=cmd_init)

    d = sub.add_parser("doctor", help="check that everything a run needs is in place, one line each")
    d.add_argument("--config", default=str(CONFIG_DIR / "quickstart.yaml"), help="YAML run config")
    d.add_argument("--address", default=None, help="the Ray cluster `generate --address` would join")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    d.set_defaults(func=cmd_doctor)

    report_cli.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from instructflow.cluster.driver import RunError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"instructflow: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RunError as exc:
        print(f"instructflow: run stopped: {exc}", file=sys.stderr)
        return EXIT_RUN
    except KeyboardInterrupt:
        print("instructflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
