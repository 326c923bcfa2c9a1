"""Command line: parse options, call the library, map PipelineError to its exit code.

Exit codes: 0 all items done; 1 failed or unfinished items, or a run-level error; 2 invalid
config, manifest or usage (nothing sent); 75 another run holds the checkpoint; 130 interrupted.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import json
import logging
import os
import sys
import threading
import time

import pipeline
from pipeline.errors import ConfigError, InvalidItems, PipelineError
from pipeline.outputs import arrow
from pipeline.run.children import cpu_seconds
from pipeline.sandbox.options import ROOT, SANDBOX_KEY, add_sandbox_arguments

EXIT_USAGE = 2
JSON_HELP = "print one JSON document on stdout instead: counts, plan, credits and problems"
# Every --json document of validate, status and run --dry-run has these keys, on success and on error.
DOCUMENT_KEYS = ("command", "exit_code", "counts", "plan", "credits", "problems")
SKIPPED_SHOWN = 5
EXIT_INTERRUPTED = 130
_stderr_handler: logging.Handler | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline", description="Batch product photos through LightX's AI Background Generator.",
        epilog="exit codes: 0 all done (or held for review) · 1 failures or unfinished items · 2 invalid config, manifest "
               "or usage · 75 another run holds the checkpoint · 130 interrupted")
    parser.add_argument("--version", action=_Version, help="print the distribution name and version, then exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="debug lines on stderr (every API exchange)")

    p = sub.add_parser("validate", parents=[common], help="check config, manifest and images; print the plan",
                       description="Check the config, the manifest and the header of every local image, "
                                   "and report every problem at once, one line each (exit 2 if any). "
                                   "Prints the items, distinct images and the credits a full run would "
                                   "spend. Makes no API call.")
    p.add_argument("config", help="path to the YAML config")
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = sub.add_parser("init", parents=[common], help="write a first catalog.yaml for a store export",
                       description="Read a Shopify, WooCommerce or Merchant Center export, say what it holds "
                                   "(format, products, pictures, products without a picture) and write a "
                                   "commented config beside it that `pipeline validate` accepts as it is.")
    p.add_argument("export", help="the store's export (products_export.csv, a feed .tsv/.xml, ...)")
    p.add_argument("--output", metavar="PATH", help="where to write the config (default: catalog.yaml beside the export)")
    p.add_argument("--force", action="store_true", help="overwrite the config if it exists")

    p = sub.add_parser("run", parents=[common], help="run the catalog: upload, submit, poll, download",
                       description="Validate, plan against the checkpoint, then upload, submit, poll and "
                                   "download every new or changed item. Unchanged done items cost nothing; "
                                   "orders already paid for are collected, never resubmitted.")
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
    p.add_argument("--json", action="store_true",
                   help="print one JSON summary line on stdout at the end; with --dry-run, the plan document")

    p = sub.add_parser("status", parents=[common], help="counts per state and failures, from the checkpoint alone",
                       description="Show what the checkpoints in state.dir know: items per state, the "
                                   "credits spent, orders still in flight, every failure with its "
                                   "reason, the last run and the runs before it, and the credits of all "
                                   "runs. Reads the checkpoint alone; makes no API call.")
    p.add_argument("config", help="path to the YAML config")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument("--runs", type=int, default=5, metavar="N",
                   help="show the last N runs of the history (default: 5)")
    p.add_argument("--check-files", action="store_true",
                   help="look at every delivered file on disk for the disclosure count (by default, beyond "
                        "50,000 of them, a random sample; every record is checked either way)")

    p = sub.add_parser("report", parents=[common], help="rebuild results.csv, results.parquet and report.html from the checkpoint",
                       description="Rewrite results.csv, results.parquet and report.html in output.dir "
                                   "from the checkpoints alone, e.g. after deleting them, editing the "
                                   "manifest's extra columns, or after the shards of --shard K/N have run "
                                   "(with output.dir in a bucket, a shard whose state directory is not on "
                                   "this machine is read from its part of the table there). Makes no API call.")
    p.add_argument("config", help="path to the YAML config")

    p = sub.add_parser("review", parents=[common], help="list the outputs held for their fidelity; approve or reject them",
                       description="List the outputs held in state review (their fidelity is below "
                                   "qa.min_fidelity), or decide on them: --approve makes them done, "
                                   "--reject has the next `pipeline run` buy them again (1 credit each, "
                                   "at most qa.max_rebuys times per item). Makes no API call.")
    p.add_argument("config", help="path to the YAML config")
    p.add_argument("--approve", nargs="+", metavar="ID", default=[], help="accept these held outputs as done")
    p.add_argument("--reject", nargs="+", metavar="ID", default=[], help="have the next run buy these again")
    p.add_argument("--reason", help="why, kept with each decision in the checkpoint")
    p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = sub.add_parser("sandbox", help="serve the LightX-compatible sandbox on loopback",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Serve a local, LightX-compatible API (a preview of the flow, not "
                                   "LightX's model)\nuntil Ctrl-C. `pipeline run --sandbox` starts its "
                                   "own; this one is for trying\nthe tool by hand or with injected faults.",
                       epilog=f"point a run at it (another terminal):\n"
                              f"  export LIGHTX_BASE_URL=http://127.0.0.1:8787{ROOT}   # host and port as "
                              f"above; the path is {ROOT}\n"
                              f"  export LIGHTX_API_KEY={SANDBOX_KEY}   # the only key it accepts "
                              f"(change it with --api-key)\n"
                              f"  pipeline run CONFIG\n"
                              f"or set api.base_url in the config instead of LIGHTX_BASE_URL.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8787, help="port to listen on; 0 picks a free one (default: 8787)")
    add_sandbox_arguments(p)
    return parser


class _Version(argparse.Action):
    """``--version``: the distribution's name and version (pipeline/version.py)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{pipeline.DISTRIBUTION} {pipeline.__version__}")
        parser.exit()


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
        return _refuse(args, exc.problems)
    except PipelineError as exc:
        _err(f"error: {exc}")
        return _failed(args, exc.exit_code, str(exc), [str(exc)])
    except KeyboardInterrupt:
        _err("aborted")
        return _failed(args, EXIT_INTERRUPTED, "aborted", [])
    finally:  # main() called in a process that goes on (tests, embedding): its stderr may be gone later
        global _stderr_handler
        if _stderr_handler is not None:
            logging.getLogger().removeHandler(_stderr_handler)
            _stderr_handler = None


def entry() -> None:
    """The `pipeline` command and `python -m pipeline`: main(), then a quick exit with its code.

    The interpreter's teardown (every module and object freed one by one) cost a 1,000-item run about
    0.1 s of CPU, a tenth of the client's CPU budget per item (#21 §5), and does nothing a finished
    command needs: the atexit functions (logging's flush, finalizers) still run, stdio is flushed.
    Skipped only when no other thread that the interpreter would wait for is still running.
    This process never hands NumPy data to pyarrow, so pyarrow is imported without NumPy (outputs/arrow.py)."""
    arrow.without_numpy()
    code = main()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing left to say
            stream.flush()
    os._exit(code)


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
    for chatty in STORAGE_LOGGERS:  # "Found credentials in environment variables." on every client
        logging.getLogger(chatty).setLevel(logging.DEBUG if verbose else logging.WARNING)


STORAGE_LOGGERS = ("botocore", "aiobotocore", "s3fs", "fsspec", "gcsfs", "adlfs", "azure")


def _refuse(args: argparse.Namespace, problems: list[str], **document) -> int:
    """Exit 2 for invalid input: every problem on stderr, and with --json in the document too."""
    for line in problems:
        _err(f"error: {line}")
    return _failed(args, ConfigError.exit_code, "; ".join(problems), problems, **document)


def _failed(args: argparse.Namespace, code: int, error: str, problems: list[str], **document) -> int:
    """With --json, monitoring still gets its one document when the command could not finish."""
    if getattr(args, "json", False):
        print(json.dumps({**_document(args.command, code, problems=problems, **document), "error": error}))
    return code


def _document(command: str, exit_code: int, *, counts: dict | None = None, plan: dict | None = None,
              credits: dict | None = None, problems: list[str] = (), **extra) -> dict:
    """A --json document: DOCUMENT_KEYS, None where the command got no far enough to know, then `extra`."""
    return {"command": command, "exit_code": exit_code, "counts": counts, "plan": plan, "credits": credits,
            "problems": list(problems), **extra}


def _manifest_counts(overview) -> dict:
    return {"items": overview.items + overview.invalid, "valid": overview.items, "invalid": overview.invalid}


def cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.inputs.validate import format_plan
    overview = pipeline.validate(args.config)
    for line in overview.warnings:
        _err(f"warning: {line}")
    document = {"counts": _manifest_counts(overview),
                **({"warnings": list(overview.warnings)} if overview.warnings else {}),
                "plan": {"items": overview.items, "distinct_images": overview.distinct_images,
                         "variants": dict(overview.per_item)},  # variant -> credits per item
                "credits": {"full_run": overview.credits}}
    if overview.store is not None:
        document["store"] = overview.store.as_dict()
    if overview.problems:
        return _refuse(args, list(overview.problems), **document)
    print(json.dumps(_document("validate", 0, **document)) if args.json else format_plan(overview))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from pipeline.inputs.files import display_path
    from pipeline.inputs.starter import init_config
    written = init_config(args.export, args.output, force=args.force)
    for line in written.summary:
        print(line)
    print(f"wrote {display_path(written.path)}; check it with `pipeline validate {display_path(written.path)}`")
    for line in written.problems[:SKIPPED_SHOWN]:
        _err(f"warning: {line}")
    if len(written.problems) > SKIPPED_SHOWN:
        _err(f"warning: ... and {len(written.problems) - SKIPPED_SHOWN} more (`pipeline validate` lists them all)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        result = pipeline.run(args.config, sandbox=args.sandbox, shard=args.shard, only=args.only, force=args.force,
                              dry_run=args.dry_run, quiet=args.quiet or args.json, skip_invalid=args.skip_invalid,
                              confirm=None if args.yes else _confirmer(), on_skipped=_skipped)
    except InvalidItems as exc:
        return _refuse(args, exc.problems, counts=_manifest_counts(exc))
    problems = list(result.overview.problems)
    if args.dry_run:
        the_plan = result.plan
        unreadable = [f"{item_id}: {why}" for item_id, why in the_plan.unreadable.items()]
        print(json.dumps(_document("run", 0, counts=_manifest_counts(result.overview), plan=the_plan.kinds(),
                                   credits={"needed": the_plan.credits_needed, "in_flight": the_plan.in_flight},
                                   problems=problems + unreadable, dry_run=True))
              if args.json else _plan_line(the_plan))
        if unreadable and not args.json:
            _listed(f"not planned: {len(unreadable)} item{'' if len(unreadable) == 1 else 's'} whose source "
                    "cannot be read now (nothing is bought for them):", unreadable, "`--dry-run --json`")
        return 0
    counts = result.counts
    line = (f"done {counts['done']} · review {counts['review']} · failed {counts['failed']} · "
            f"pending {counts['pending']} · "
            f"{result.credits} credits spent · {result.elapsed_s:.1f} s · results: {result.results_path}")
    if result.message:
        _err(f"stopped: {result.message}")
    if args.json:
        print(json.dumps({"command": "run", "exit_code": result.exit_code, "counts": dict(counts),
                          "credits": result.credits, "submits": result.submits,
                          "elapsed_s": round(result.elapsed_s, 3), "cpu_s": cpu_seconds(),
                          "stopped": result.message, "results": str(result.results_path), "problems": problems,
                          "store_files": {f.name: f.products for f in result.extra.get("store_files", ())}}))
    else:
        print(line)
        for written in result.extra.get("store_files", ()):
            print(f"{written.name}: {written.products} product{'' if written.products == 1 else 's'} "
                  f"with new pictures, beside {result.results_path}")
    return result.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline.outputs.status import format_status
    doc = pipeline.status(args.config, runs=max(1, args.runs), check_files=args.check_files)
    if args.json:
        counts, credits = doc.pop("counts"), doc.pop("credits")
        print(json.dumps(_document("status", 0, counts=counts, plan={"in_flight": doc.pop("in_flight")},
                                   credits=credits, **doc)))
    else:
        print(format_status(doc))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    print(f"report: {pipeline.report(args.config)}")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    doc = pipeline.review(args.config, approve=args.approve, reject=args.reject, reason=args.reason)
    held, approved, rejected = doc["held"], doc["approved"], doc["rejected"]
    if args.json:
        print(json.dumps(_document("review", 0, counts={"review": len(held), "approved": len(approved),
                                                        "rejected": len(rejected)},
                                   credits={"next_run": len(rejected)}, problems=[],
                                   held=held, approved=approved, rejected=rejected)))
        return 0
    if approved or rejected:
        print(f"approved {len(approved)} · rejected {len(rejected)} "
              f"(the next `pipeline run` buys them again: {len(rejected)} credits)")
    print(f"held for review: {len(held)}")
    for item in held:
        print(f"  {item['id']}: fidelity {_num(item['fidelity'], '.2f')} · SSIM {_num(item['ssim'], '.2f')}"
              f" · ΔE {_num(item['delta_e'], '.1f')} · IoU {_num(item['iou'], '.2f')} · {item['output_path']}"
              f"\n    {item['approve']}\n    {item['reject']}")
    return 0


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


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


def _listed(title: str, lines: list[str], where_all: str) -> None:
    _err(title)
    for line in lines[:SKIPPED_SHOWN]:
        _err(f"  {line}")
    if len(lines) > SKIPPED_SHOWN:
        _err(f"  ... and {len(lines) - SKIPPED_SHOWN} more ({where_all} lists them all)")


def _skipped(invalid) -> None:
    """--skip-invalid: say which items are recorded as failed, and why (the first few)."""
    _err(f"skipping {len(invalid)} invalid item{'' if len(invalid) == 1 else 's'} (recorded as failed):")
    for bad in invalid[:SKIPPED_SHOWN]:
        for line in bad.problems:
            _err(f"  {line}")
    if len(invalid) > SKIPPED_SHOWN:
        _err(f"  ... and {len(invalid) - SKIPPED_SHOWN} more (`pipeline validate` lists them all)")


def _plan_line(plan) -> str:
    return ("plan: " + " · ".join(f"{kind} {count}" for kind, count in plan.kinds().items())
            + f" · credits needed {plan.credits_needed}"
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


COMMANDS = {"init": cmd_init, "validate": cmd_validate, "run": cmd_run, "status": cmd_status, "report": cmd_report, "review": cmd_review,
            "sandbox": cmd_sandbox}

if __name__ == "__main__":
    sys.exit(main())
