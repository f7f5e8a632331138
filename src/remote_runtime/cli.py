"""The ``remote-runtime`` command: list, inspect, follow, cancel and collect jobs.

    remote-runtime jobs list [--prefix P] [--status S] [--limit N]   (newest first)
    remote-runtime jobs show NAME
    remote-runtime jobs logs NAME [--follow]
    remote-runtime jobs cancel NAME
    remote-runtime jobs result NAME
    remote-runtime gc --older-than 7d [--grace 1h] [--dry-run]
    remote-runtime config

``--root URI`` (before the command) names the job root; by default the settings'
``s3_root_uri`` (argument > REMOTE_RUNTIME_S3_ROOT_URI > config file > default).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from typing import Any

from . import job as J
from .client import Job, recall_key, store_for
from .errors import ServiceError
from .records import printable as _p
from .settings import Settings, resolve_settings

__all__ = ["main"]


def _settings(args: argparse.Namespace) -> Settings:
    return resolve_settings({"s3_root_uri": args.root} if args.root else {}, "remote-runtime")


def _job(args: argparse.Namespace, name: str) -> Job:
    settings = _settings(args)
    paths = J.JobPaths(store_for(settings), J.check_job_name(name))
    if not paths.store.exists(paths.spec):
        raise SystemExit(f"error: no job named {name!r} under {paths.store.uri}")
    return Job(paths, recall_key(name, paths.read_spec()), settings)


def _when(stamp: Any) -> str:
    if not stamp or not isinstance(stamp, (int, float)):
        return "-"
    try:
        return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return _p(stamp)


def _duration(status: dict[str, Any]) -> str:
    start, end = (
        status.get("started"),
        status.get("ended") or (time.time() if status.get("started") else None),
    )
    if not isinstance(start, (int, float)) or not isinstance(end, (int, float)):
        return "-"
    seconds = end - start
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def cmd_list(args: argparse.Namespace) -> int:
    from .futures import list_futures

    header = ("NAME", "STATUS", "CREATED", "DURATION", "FUNCTION", "ERROR")
    rows = []
    for future in list_futures(
        args.prefix,
        _settings(args).s3_root_uri,
        status=args.status,
        limit=args.limit or None,
        newest_first=True,
    ):
        status = future.job.status()
        try:
            spec = future.job.paths.read_spec()
        except J.JobRecordError as exc:
            spec = {"function": f"? ({exc})"}
        error = status.get("error") or {}
        text = ""
        if error:
            text = f"{str(error.get('type', '')).rsplit('.', 1)[-1]}: {error.get('message', '')}"
            text = " ".join(text.split())
            text = text if len(text) <= 60 else text[:57] + "..."
            text = _p(text)
        elif status.get("state") == J.JobState.STOPPED:
            text = _p(str(status.get("reason") or status.get("stage") or ""))
        rows.append(
            (
                future.job_name,
                _p(status.get("state", "?")),
                _when(spec.get("created")),
                _duration(status),
                _p(spec.get("function", "?"), limit=200),
                text,
            )
        )
    if not rows:
        print("no jobs")
        return 0
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


def cmd_show(args: argparse.Namespace) -> int:

    # Every string below comes from the job folder, which others may write: each goes
    # through _p (records.printable), so no escape sequence reaches the terminal.
    job = _job(args, args.name)
    spec = job.paths.read_spec()
    status = job.status()
    print(f"job {job.name}  ({_p(job.paths.store.uri_of(job.name))})")
    print(f"  function   {_p(spec.get('function'))}")
    if status.get("state") == J.JobState.UNKNOWN:
        print(f"  state      Unknown: {_p(status.get('unreadable'))}")
    else:
        print(
            f"  state      {_p(status.get('state'))}  (exit code {_p(status.get('exit_code', '-'))}, attempt {_p(status.get('attempt', 1))})"
        )
    print(
        f"  created    {_when(spec.get('created'))}  started {_when(status.get('started'))}  ended {_when(status.get('ended'))}"
    )
    print(
        f"  host/pid   {_p(status.get('host', '-'))}/{_p(status.get('pid', '-'))}   python {_p(spec.get('python'))}"
    )
    backend = status.get("backend") or {}
    if isinstance(backend, dict) and backend.get("submission_ids"):
        print(
            f"  attempts   {len(backend['submission_ids'])} on {_p(backend.get('name'))} "
            f"{_p(backend.get('address', ''))}: "
            + ", ".join(_p(s) for s in backend["submission_ids"])
        )
    error = status.get("error")
    if isinstance(error, dict) and error:
        print(f"  error      {_p(error.get('type'))}: {_p(error.get('message'))}")
    settings = spec.get("settings")
    settings = (
        {k: v for k, v in settings.items() if v not in (None, False, [], {})}
        if isinstance(settings, dict)
        else settings
    )
    print("  settings   " + _p(json.dumps(settings, sort_keys=True, default=repr)))
    for which in ("function", "arguments", "results", "exception"):
        if job.paths.has_bundle(which):
            one_file = job.paths.store.exists(job.paths.bundle_file(which))
            text = str(job.paths.inspect_bundle(which))
            label = f"{which}.bundle" if one_file else f"{which}/"
            print(f"\n{label}\n" + "\n".join("  " + _p(line) for line in text.splitlines()))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    """The last LOG_CHUNK bytes of each log (what came before is named, not printed: a log
    may be larger than memory), then, with --follow, what the job writes until it ends."""
    job = _job(args, args.name)
    offsets = {}
    for stream, out in (("stdout", sys.stdout), ("stderr", sys.stderr)):
        size = J.job_log_size(job.paths, stream)
        offsets[stream] = max(0, size - J.LOG_CHUNK)
        if offsets[stream]:
            print(
                f"[... {offsets[stream]} earlier bytes of {stream} are in "
                f"{job.paths.stdout if stream == 'stdout' else job.paths.stderr}]",
                file=out,
            )

    def pump() -> None:
        for stream, out in (("stdout", sys.stdout), ("stderr", sys.stderr)):
            while True:
                data = J.read_job_log(job.paths, stream, offsets[stream])
                offsets[stream] += len(data)
                if data:
                    out.write(data.decode(errors="replace"))
                    out.flush()
                if len(data) < J.LOG_CHUNK:
                    break

    while True:
        pump()
        if not args.follow or job.status().get("state") in J.JobState.TERMINAL:
            if args.follow:
                pump()  # one last read after the end
            return 0
        time.sleep(0.5)


def cmd_cancel(args: argparse.Namespace) -> int:
    job = _job(args, args.name)
    state = job.status().get("state")
    if state in J.JobState.TERMINAL:
        print(f"job {job.name} has already ended ({state})")
        return 0
    refused = job.stop()
    if refused is not None:
        print(f"error: job {job.name} was not stopped: {_p(refused)}", file=sys.stderr)
        return 1
    print(f"job {job.name}: {_p(job.status().get('state'))}")
    return 0


def cmd_result(args: argparse.Namespace) -> int:
    import traceback

    job = _job(args, args.name)
    if job.status().get("state") not in J.JobState.TERMINAL:
        print(f"job {job.name} has not ended yet ({job.status().get('state')})", file=sys.stderr)
        return 2
    try:
        value = job.outcome()
    except BaseException as exc:
        traceback.print_exception(type(exc), exc, None)
        return 1
    print(repr(value))
    return 0


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 30m, 12h, 7d, 2w)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def cmd_gc(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = store_for(settings)
    now = time.time()
    cutoff = now - args.older_than
    leftover_cutoff = now - args.grace
    removed = kept = leftovers = 0
    verb = "would remove" if args.dry_run else "removing"
    for name in store.list_names():
        if not J.NAME_RE.match(name):
            continue
        paths = J.JobPaths(store, name)
        if not store.exists(paths.spec):
            # a folder whose upload was cut before job.json: parts without a manifest
            newest = store.newest_modified(paths.folder)
            if newest is not None and newest < leftover_cutoff:
                print(f"{verb} {name} (an unfinished job folder, last written {_when(newest)})")
                if not args.dry_run:
                    store.remove(paths.folder)
                leftovers += 1
            continue
        status = paths.read_status()
        state = status.get("state")
        when = status.get("ended") or status.get("updated") or paths.read_spec().get("created") or 0
        if state not in J.JobState.TERMINAL or when > cutoff:
            kept += 1
            if state in J.JobState.TERMINAL:
                leftovers += _gc_cut_bundles(store, paths, leftover_cutoff, args.dry_run)
            continue
        print(f"{verb} {name} ({state}, ended {_when(when)})")
        if not args.dry_run:
            store.remove(paths.folder)
        removed += 1
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"{verb} {removed} job(s) and {leftovers} cut upload(s); "
        f"kept {kept} (running, or ended more recently)"
    )
    return 0


def _gc_cut_bundles(store: Any, paths: J.JobPaths, cutoff: float, dry_run: bool) -> int:
    """Remove the bundle folders of an ended job that hold parts but no manifest (an
    upload cut short) and were last written before ``cutoff``."""
    count = 0
    for which in ("function", "arguments", "results", "exception"):
        folder = store.path(paths.name, which)
        if paths.has_bundle(which):
            continue
        newest = store.newest_modified(folder)
        if newest is None or newest >= cutoff:
            continue
        print(
            f"{'would remove' if dry_run else 'removing'} {paths.name}/{which}/ "
            f"(parts without a manifest, last written {_when(newest)})"
        )
        if not dry_run:
            store.remove(folder)
        count += 1
    return count


def cmd_config(args: argparse.Namespace) -> int:
    print(_settings(args).describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remote-runtime", description="Inspect and manage remote-runtime jobs."
    )
    parser.add_argument("--root", help="the job root URI (default: the s3_root_uri setting)")
    sub = parser.add_subparsers(dest="command", required=True)
    jobs = sub.add_parser("jobs", help="list, show, follow, cancel jobs and get their results")
    jsub = jobs.add_subparsers(dest="jobs_command", required=True)
    p = jsub.add_parser("list", help="list jobs, newest first")
    p.add_argument("--prefix", help="only jobs whose name starts with this")
    p.add_argument(
        "--status",
        type=_state,
        help="only jobs in this state: Pending, InProgress, Completed, Failed or Stopped (any case)",
    )
    p.add_argument(
        "--limit", type=int, default=50, help="at most this many jobs (default 50; 0: all)"
    )
    p.set_defaults(func=cmd_list)
    for name, func, text in (
        ("show", cmd_show, "a job's spec, status and bundles (parts, codecs, sizes)"),
        ("cancel", cmd_cancel, "stop a job"),
        ("result", cmd_result, "print a job's return value (or its exception)"),
    ):
        p = jsub.add_parser(name, help=text)
        p.add_argument("name")
        p.set_defaults(func=func)
    p = jsub.add_parser("logs", help="print a job's logs")
    p.add_argument("name")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser(
        "gc", help="remove ended jobs older than a duration (the root is not long-term storage)"
    )
    p.add_argument("--older-than", type=parse_duration, required=True, help="e.g. 7d, 12h, 30m")
    p.add_argument(
        "--grace",
        type=parse_duration,
        default=parse_duration("1h"),
        help="also remove parts left without a manifest by cut uploads once they are this "
        "old (default 1h)",
    )
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.set_defaults(func=cmd_gc)
    p = sub.add_parser("config", help="the effective settings and where each came from")
    p.set_defaults(func=cmd_config)
    return parser


def _state(text: str) -> str:
    from .futures import canonical_state

    try:
        return canonical_state(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, as other commands do
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (ValueError, LookupError, OSError, ServiceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
