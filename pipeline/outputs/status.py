"""`pipeline status`: counts per state, failures with reasons and the run history, from the checkpoints alone.

    doc = read_status("configs/catalog.yaml")   # the document `pipeline status --json` prints
    print(format_status(doc))
"""
from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import datetime, timezone

from pipeline.errors import CheckpointError
from pipeline.inputs.config import load_config
from pipeline.outputs.disclosed import count_tallied, disclosure_status
from pipeline.outputs import bucket
from pipeline.outputs.publish import checkpoint_paths, merged_history, merged_rows
from pipeline.store import steps_dir
from pipeline.store.checkpoint import RUNS_SHOWN, STATES
from pipeline.store.tally import read_tally

MAX_FAILURES_SHOWN = 50
# "new" is a pending (or uploaded) row no order was ever created for: nothing of it was paid for.
COUNTED = ("new", *STATES)


def read_status(config_path: str, runs: int = RUNS_SHOWN, check_files: bool = False) -> dict:
    """What the checkpoints know (every shard's, summed, as `pipeline report` merges them), as plain
    data: checkpoint, counts, credits, failures, notes, runs.

    ``credits``: ``spent`` is what the current items hold (an item ordered anew starts again at 0),
    ``last_run`` what the newest run was charged, ``all_time`` what every recorded run was charged.
    ``disclosure``: every record of a delivered file is checked; of the files themselves, beyond
    50,000 and without `check_files`, a random sample (``files_checked`` says how many)."""
    cfg = load_config(config_path)
    paths = checkpoint_paths(cfg)
    # With output.dir in a bucket, the shards' parts of the table there stand in for the checkpoints
    # this machine lacks (an Indexed Job's pods keep theirs on volumes of their own), as in `report`.
    stored = bucket.stored_rows(cfg) if cfg.output_url else {}
    shown = str(paths[0]) if len(paths) == 1 else str(cfg.checkpoint_path) if not paths else \
        f"{len(paths)} under {cfg.state_root}"
    if stored:
        shown += f" and the shards' results in {cfg.output_url}"
    doc: dict = {"checkpoint": shown, "exists": bool(paths or stored),
                 "counts": dict.fromkeys(("items", *COUNTED), 0),
                 "credits": {"spent": 0, "last_run": None, "all_time": 0},
                 "in_flight": 0, "failures": [], "notes": [], "runs": [], "total_runs": 0, "review": [],
                 "decisions": []}
    if not paths and not stored:
        return doc
    # Without variants, one checkpoint holding rows (others empty, as a dry run's shard leaves one) is
    # counted by SQLite (store/tally): a million rows in seconds. Several are merged row by row.
    tallies = [] if cfg.variants or stored else [read_tally(path) for path in paths]
    held = [t for t in tallies if t is None or t.items]
    tally = None if None in tallies or len(held) > 1 or not tallies else (held or tallies)[0]
    try:
        rows = {**stored, **merged_rows(paths)} if tally is None else {}
        history = merged_history(paths, runs)
    except sqlite3.Error as exc:
        raise CheckpointError(f"cannot read checkpoint {paths}: {exc}") from None
    if tally is not None:
        doc = _tallied(doc, tally, history, paths)
        doc["disclosure"] = count_tallied(cfg, paths, check_all=check_files)
        return doc
    counts = Counter(_state(r) for r in rows.values())
    doc["counts"] = {"items": len(rows), **{state: counts[state] for state in COUNTED}}
    if cfg.variants:  # items, and their variants by the step each is at; the step rows apart
        items, units = _units(rows.values(), {v.name: len(v.steps) for v in cfg.variants})
        doc["counts"] = {"items": items, "variants": len(units),
                         **{state: sum(1 for s in units.values() if s == state) for state in COUNTED}}
        doc["step_rows"] = {"rows": len(rows), **{state: counts[state] for state in COUNTED}}
    files, size = 0, 0
    for path in paths:
        more = steps_dir.usage(path.parent)
        files, size = files + more[0], size + more[1]
    if cfg.variants or files:
        doc["steps_dir"] = {"files": files, "bytes": size}
    doc["credits"] = {"spent": sum(r.credits for r in rows.values()),
                      "last_run": history.runs[0].credits if history.runs else None,
                      "all_time": history.all_time_credits}
    doc["runs"] = [run.to_dict() for run in history.runs]
    doc["total_runs"] = history.total_runs
    doc["in_flight"] = counts["submitted"] + counts["generated"]
    doc["disclosure"] = disclosure_status(cfg, rows, paths)
    doc["failures"] = [{"id": r.id, "error": r.error or "no reason recorded"}
                       for r in sorted(rows.values(), key=lambda r: r.id) if r.state == "failed"]
    doc["notes"] = [{"id": r.id, "state": str(r.state), "error": r.error}
                    for r in sorted(rows.values(), key=lambda r: r.id)
                    if r.state not in ("done", "failed") and r.error]
    doc["review"] = [{"id": r.id, "fidelity": r.fidelity, "last_decision": r.review}
                     for r in sorted(rows.values(), key=lambda r: r.id) if r.state == "review"]
    doc["decisions"] = [{"id": r.id, "decision": r.review, "reason": r.review_reason, "at": r.reviewed_at,
                         "state": str(r.state)}
                        for r in sorted(rows.values(), key=lambda r: (-(r.reviewed_at or 0), r.id)) if r.review]
    if cfg.variants:
        from pipeline.inputs.variants import step_id
        names = [(v.name, len(v.steps)) for v in cfg.variants]
        doc["steps"] = [{"id": r.id, "state": str(r.state), "order_id": r.order_id, "credits": r.credits}
                        for r in sorted(rows.values(), key=lambda r: r.id)
                        if r.id.count("/") >= 2 and any(r.id.endswith(step_id("", n, k))
                                                         for n, count in names for k in range(count))]
    return doc


def _tallied(doc: dict, tally, history, paths) -> dict:
    """The document read_status makes from the rows, made from one checkpoint's tally."""
    doc["counts"] = {"items": tally.items, **{state: tally.counts.get(state, 0) for state in COUNTED}}
    files, size = 0, 0
    for path in paths:
        more = steps_dir.usage(path.parent)
        files, size = files + more[0], size + more[1]
    if files:
        doc["steps_dir"] = {"files": files, "bytes": size}
    doc["credits"] = {"spent": tally.credits, "last_run": history.runs[0].credits if history.runs else None,
                      "all_time": history.all_time_credits}
    doc["runs"] = [run.to_dict() for run in history.runs]
    doc["total_runs"] = history.total_runs
    doc["in_flight"] = doc["counts"]["submitted"] + doc["counts"]["generated"]
    doc["failures"] = [{"id": i, "error": error or "no reason recorded"} for i, error in tally.failures]
    doc["notes"] = [{"id": i, "state": state, "error": error} for i, state, error in tally.notes]
    doc["review"] = [{"id": i, "fidelity": score, "last_decision": last} for i, score, last in tally.review]
    doc["decisions"] = [{"id": i, "decision": decision, "reason": reason, "at": at, "state": state}
                        for i, decision, reason, at, state in tally.decisions]
    return doc


def _state(row) -> str:
    return "new" if row.never_ordered else str(row.state)


def _units(rows, steps: dict[str, int]) -> tuple[int, dict[str, str]]:
    """(items, {item/variant: state}) from step rows ``{id}/{variant}/{n}``: a variant is in the
    state of its furthest step's row, and `pending` between steps (one done, the next not ordered
    yet); a row of an item that could not run at all (``{id}``, failed) stands for the item."""
    furthest: dict[str, tuple[int, int, object]] = {}  # key -> (step, steps, row)
    items = set()
    for row in rows:
        parts = row.id.rsplit("/", 2)
        if len(parts) == 3 and parts[1] in steps and parts[2].isdigit():
            item_id, key, k, count = parts[0], f"{parts[0]}/{parts[1]}", int(parts[2]), steps[parts[1]]
        else:
            item_id, key, k, count = row.id, row.id, 1, 1
        items.add(item_id)
        if key not in furthest or k > furthest[key][0]:
            furthest[key] = (k, count, row)
    units = {}
    for key, (k, count, row) in furthest.items():
        between = k < count and str(row.state) == "done" or k > 1 and row.never_ordered
        units[key] = "pending" if between else _state(row)
    return len(items), units


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} bytes"


def format_status(doc: dict) -> str:
    """The human form of `read_status`'s document."""
    path = doc["checkpoint"]
    if not doc["exists"]:
        return f"no checkpoint yet at {path}: nothing has run"
    counts, credits = doc["counts"], doc["credits"]
    variants = f" · variants: {counts['variants']}" if "variants" in counts else ""
    lines = [f"checkpoint: {path}", f"items: {counts['items']}{variants} · credits spent: {credits['spent']} "
             f"(on the current items) · all-time credits: {credits['all_time']} "
             f"(over {doc['total_runs']} run{'' if doc['total_runs'] == 1 else 's'})"]
    lines += [f"  {state:<10} {counts[state]}" + ("  (never submitted)" if state == "new" else "")
              for state in COUNTED if counts[state]]
    disclosure = doc.get("disclosure") or {}
    if disclosure.get("lacking"):
        lines.append(f"disclosure: {disclosure['lacking']} of {disclosure['outputs']} delivered pictures lack the "
                     f"AI-disclosure metadata ({disclosure['source_type']}); "
                     + ("output.disclosure is off" if disclosure["source_type"] == "off"
                        else "the next run writes it, for 0 credits"))
    if "files_checked" in disclosure:  # a sample: say so, and how to look at every file
        lines.append(f"disclosure: every record checked; files on disk: a random sample of "
                     f"{disclosure['files_checked']:,} of {disclosure['outputs']:,} looked at (--check-files: every one)")
    if "step_rows" in doc:  # with variants, the states above are the variants'; the steps' rows apart
        rows = doc["step_rows"]
        lines.append(f"step rows: {rows['rows']}" + "".join(f" · {state} {rows[state]}"
                                                           for state in COUNTED if rows[state]))
    if "steps_dir" in doc:
        held = doc["steps_dir"]
        lines.append(f"steps/: {held['files']} intermediate output{'s' * (held['files'] != 1)}, "
                     f"{_size(held['bytes'])}")
    if doc["in_flight"]:
        lines.append(f"orders in flight (collected by the next run): {doc['in_flight']}")
    failed = doc["failures"]
    if failed:
        lines.append("failures:")
        lines += [f"  {f['id']}: {f['error']}" for f in failed[:MAX_FAILURES_SHOWN]]
        if len(failed) > MAX_FAILURES_SHOWN:
            lines.append(f"  ... and {len(failed) - MAX_FAILURES_SHOWN} more (see results.csv)")
    steps = doc.get("steps") or []
    if steps:  # one row per step of each (item, variant): its order and what it cost
        lines.append(f"steps: {len(steps)} (id [state] order, credits)")
        lines += [f"  {s['id']} [{s['state']}] {s['order_id'] or '-'}, {s['credits']} credit{'s' * (s['credits'] != 1)}"
                  for s in steps[:MAX_FAILURES_SHOWN]]
        if len(steps) > MAX_FAILURES_SHOWN:
            lines.append(f"  ... and {len(steps) - MAX_FAILURES_SHOWN} more (in the checkpoint's items table)")
    if doc["review"]:
        lines.append(f"held for review ({len(doc['review'])}; `pipeline review` lists them with their commands):")
        lines += [f"  {h['id']}: fidelity " + ("-" if h["fidelity"] is None else f"{h['fidelity']:.2f}")
                  for h in doc["review"][:MAX_FAILURES_SHOWN]]
    if doc["decisions"]:
        lines.append("review decisions (the newest first):")
        lines += [f"  {d['id']}: {d['decision']} {_when(d['at'])}" + (f" ({d['reason']})" if d["reason"] else "")
                  + f", now {d['state']}" for d in doc["decisions"][:MAX_FAILURES_SHOWN]]
    notes = doc["notes"]
    if notes:
        lines.append("pending with a note:")
        lines += [f"  {n['id']} [{n['state']}]: {n['error']}" for n in notes[:MAX_FAILURES_SHOWN]]
    if doc["runs"]:
        lines.append(f"last run: {_run_line(doc['runs'][0])}")
    if len(doc["runs"]) > 1:
        lines.append(f"runs (the last {len(doc['runs'])} of {doc['total_runs']}):")
        lines += [f"  {_run_line(run)}" for run in doc["runs"]]
    return "\n".join(lines)


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "-"


def review_summary(options: dict) -> str:
    """A review's history entry in words: ``review: approved a, b · rejected c ("logo changed")``."""
    parts = [f"{word} {', '.join(options.get(word) or [])}" for word in ("approved", "rejected") if options.get(word)]
    return "review: " + " · ".join(parts) + (f' ("{options["reason"]}")' if options.get("reason") else "")


def _run_line(run: dict) -> str:
    """``#4 2026-12-01 23:50 UTC · exit 0 · 10 credits · 10 orders · 4.2 s · 0.1.0 · --force``"""
    if run["options"].get("command") == "review":
        return f"#{run['id']} {_when(run['started_at'])} · {review_summary(run['options'])}"
    if run["note"]:
        return f"before history · {run['credits']} credits · {run['submits']} orders ({run['note']})"
    when = datetime.fromtimestamp(run["started_at"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    ended = ("still running, or killed" if run["ended_at"] is None else f"exit {run['exit_code']}")
    parts = [f"#{run['id']} {when}", ended, f"{run['credits']} credits", f"{run['submits']} orders"]
    if run["elapsed_s"] is not None:
        parts.append(f"{run['elapsed_s']:.1f} s")
    parts.append(run["version"] or "unknown version")
    options = run["options"]
    flags = [f for f, k in (("--sandbox", None), ("--force", "force"), ("--skip-invalid", "skip_invalid"))
             if (options.get(k) if k else options.get("api") == "sandbox")]
    if options.get("only_count"):
        flags.append(f"--only ({options['only_count']} ids)")
    if options.get("shard"):
        flags.append(f"--shard {options['shard']}")
    return " · ".join(parts + ([" ".join(flags)] if flags else []))
