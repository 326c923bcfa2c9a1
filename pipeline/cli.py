"""Command line: parse options, call the library, map PipelineError to its exit code.

Exit codes: 0 all items done; 1 failed or unfinished items, or a run-level error; 2 invalid
config, manifest or usage (nothing sent); 75 another run holds the checkpoint; 130 interrupted.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time

from pipeline.errors import ConfigError, PipelineError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_stderr_handler: logging.Handler | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline", description="Batch product photos through LightX's AI Background Generator.",
        epilog="exit codes: 0 all done · 1 failures or unfinished items · 2 invalid config, manifest "
               "or usage · 75 another run holds the checkpoint · 130 interrupted")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="debug lines on stderr (every API exchange)")

    p = sub.add_parser("validate", parents=[common], help="check config, manifest and images; print the plan")
    p.add_argument("config", help="path to the YAML config")

    p = sub.add_parser("run", parents=[common], help="run the catalog: upload, submit, poll, download")
    p.add_argument("config", help="path to the YAML config")
    p.add_argument("--sandbox", action="store_true",
                   help="run against a local LightX-compatible sandbox (no key, no network)")
    p.add_argument("--skip-invalid", action="store_true",
                   help="record invalid items as failed and run the rest, instead of exiting 2")
    p.add_argument("--force", action="store_true", help="reprocess every item, even unchanged ones")
    p.add_argument("--only", nargs="+", metavar="ID", default=[], help="process only these item ids")
    p.add_argument("--shard", metavar="K/N", help="process only shard K of N (stable hash of id); own checkpoint "
                   "and lock under state.dir; `pipeline report` merges the shards")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan and the credits it needs; make no API call")
    p.add_argument("--yes", action="store_true", help="do not ask before spending over budget.confirm_over")
    p.add_argument("--quiet", action="store_true", help="no progress output; errors and the summary only")
    p.add_argument("--json", action="store_true", help="print one JSON summary line on stdout at the end")

    p = sub.add_parser("status", parents=[common], help="counts per state and failures, from the checkpoint alone")
    p.add_argument("config", help="path to the YAML config")

    p = sub.add_parser("report", parents=[common], help="rebuild results.csv, results.parquet and report.html from the checkpoint")
    p.add_argument("config", help="path to the YAML config")

    p = sub.add_parser("sandbox", help="serve the LightX-compatible sandbox on loopback")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8787, help="port to listen on; 0 picks a free one (default: 8787)")
    from pipeline.sandbox.options import add_sandbox_arguments
    add_sandbox_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    _log_to_stderr(args)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        for line in exc.problems:
            _err(f"error: {line}")
        return _failed(args, exc.exit_code, "; ".join(exc.problems))
    except PipelineError as exc:
        _err(f"error: {exc}")
        return _failed(args, exc.exit_code, str(exc))
    except KeyboardInterrupt:
        _err("aborted")
        return _failed(args, EXIT_INTERRUPTED, "aborted")


def _log_to_stderr(args: argparse.Namespace) -> None:
    """Warnings and up with --quiet, debug lines with --verbose, else info; the run log is separate."""
    verbose = getattr(args, "verbose", False)
    level = logging.DEBUG if verbose else logging.WARNING if getattr(args, "quiet", False) else logging.INFO
    global _stderr_handler
    root = logging.getLogger()
    if _stderr_handler is not None:  # main() called again in one process (tests, embedding)
        root.removeHandler(_stderr_handler)
    _stderr_handler = handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def _failed(args: argparse.Namespace, code: int, error: str) -> int:
    """With --json, monitoring still gets its one line when the run could not finish."""
    if getattr(args, "json", False):
        print(json.dumps({"exit_code": code, "error": error}))
    return code


def cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.inputs.validate import format_plan, problem_lines, validate
    cfg, manifest, plan = validate(args.config)
    problems = problem_lines(manifest)
    if problems:
        raise ConfigError(problems)
    print(format_plan(plan))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.inputs.config import api_key
    from pipeline.run.engine import RunOptions, run
    from pipeline.inputs.validate import validate

    cfg, manifest, _ = validate(args.config)
    if args.shard:
        from pipeline.plan.shards import Shard
        shard = Shard.parse(args.shard)
        cfg, manifest = dataclasses.replace(cfg, shard=shard), shard.select(manifest)
    options = RunOptions(sandbox=args.sandbox, skip_invalid=args.skip_invalid, force=args.force,
                         only=frozenset(args.only), dry_run=args.dry_run, quiet=args.quiet or args.json,
                         confirm=None if args.yes else _confirmer())
    result = run(cfg, manifest, options, key=api_key(cfg))
    if args.dry_run:
        print(_plan_line(result.plan))
        return 0
    counts = result.counts
    line = (f"done {counts['done']} · failed {counts['failed']} · pending {counts['pending']} · "
            f"{result.credits} credits spent · {result.elapsed_s:.1f} s · results: {result.results_path}")
    if result.message:
        _err(f"stopped: {result.message}")
    if args.json:
        print(json.dumps({"exit_code": result.exit_code, "counts": dict(counts), "credits": result.credits,
                          "submits": result.submits, "elapsed_s": round(result.elapsed_s, 3),
                          "stopped": result.message, "results": str(result.results_path)}))
    else:
        print(line)
    return result.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.outputs.status import format_status
    print(format_status(args.config))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.outputs.publish import rebuild
    print(f"report: {rebuild(args.config)}")
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from pipeline.sandbox import serve
    from pipeline.sandbox.options import options_from_args
    serve(args.host, args.port, options_from_args(args))
    return 0


def _err(line: str) -> None:
    """A message on stderr; timestamped like the log lines when nobody watches (cron, CI)."""
    if not sys.stderr.isatty():
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}"
    print(line, file=sys.stderr)


def _plan_line(plan) -> str:
    c = plan.counts
    return (f"plan: new {c['new']} · changed {c['changed']} · unchanged {c['unchanged']} · "
            f"resumable {c['resumable'] + c['restart']} · retry {c['retry']} · repair {c['repair']} · "
            f"forced {c['forced']} · credits needed {plan.credits_needed}"
            + (f" (+ up to {plan.in_flight} for orders already in flight)" if plan.in_flight else ""))


def _confirmer():
    """Ask on a TTY before a big spend; without a TTY (cron) never prompt."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None

    def confirm(credits: int) -> bool:
        print(f"This run may spend up to {credits} credits. Continue? [y/N] ", end="",
              file=sys.stderr, flush=True)
        return sys.stdin.readline().strip().lower() in ("y", "yes")
    return confirm


COMMANDS = {"validate": cmd_validate, "run": cmd_run, "status": cmd_status, "report": cmd_report,
            "sandbox": cmd_sandbox}

if __name__ == "__main__":
    sys.exit(main())
