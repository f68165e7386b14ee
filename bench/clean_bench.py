"""Benchmark ``perfspec clean`` against DuckDB, Polars, pandas and a bare orjson loop, on the same files
in the same run (issue 15: >= 0.8x DuckDB's plain JSON -> Parquet copy, peak RSS <= 512 MB at 2 GB).

The input is a large raw audit log (JSON lines, ``audit.k8s.io/v1``, Metadata level like the PerfSPEC
recording) built by replaying real events: every row of the seed Logstash CSV is expanded into a full
Event (user groups, source IP, user agent, objectRef, responseStatus, annotations, both timestamps),
and the JSON samples of ``../shared/data/audit-samples`` are mixed in with their bodies stripped; each
replayed event gets a fresh audit ID and a fresh, increasing timestamp. Each contender runs in its own
subprocess so its peak RSS (GNU ``time``) is its own; contenders are interleaved and repeated so a noisy
neighbour does not decide a ratio. ``--mixed`` also cleans a file with bad lines (torn, 2 MB, non-UTF-8,
invalid JSON) and v1beta1 events with the native scanner on and off: the outputs must be byte-identical.

    python -m bench clean                                  # 1 GB and 2 GB inputs (built once, cached)
    python -m bench clean --size-mb 50 100 --mixed-mb 50   # quicker
    python -m bench clean --repeat 3 --mixed --write       # the numbers for RESULTS.md
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import filecmp
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.results import write_section

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
OUT = REPO / "bench" / "out"
SEED_CSV = SHARED / "kubernetes-event-dataset" / "audit-logs.csv"
SAMPLE_CSV = REPO / "sample" / "audit-logs.csv.gz"
SAMPLES = SHARED / "audit-samples"
MB = 1_000_000

# --- building the input -------------------------------------------------------------------------------

_GROUPS = {
    "system:node:": ["system:nodes", "system:authenticated"],
    "system:serviceaccount:": ["system:serviceaccounts", "system:authenticated"],
    "system:kube-": ["system:authenticated"],
    "": ["system:masters", "system:authenticated"],
}
_AGENTS = {
    "system:node:": "kubelet/v1.26.1 (linux/amd64) kubernetes/8f94681",
    "system:kube-scheduler": "kube-scheduler/v1.26.1 (linux/amd64) kubernetes/8f94681/scheduler",
    "system:kube-controller-manager": "kube-controller-manager/v1.26.1 (linux/amd64) kubernetes/8f94681/"
    "system:serviceaccount:kube-system:generic-garbage-collector",
    "system:apiserver": "kube-apiserver/v1.26.1 (linux/amd64) kubernetes/8f94681",
    "": "Go-http-client/2.0",
}


def _namespace(uri: str) -> str | None:
    parts = uri.split("?", 1)[0].split("/")
    if "namespaces" in parts:
        i = parts.index("namespaces")
        if i + 2 < len(parts):
            return parts[i + 1]
    return None


def _api(uri: str) -> tuple[str, str]:
    parts = uri.split("?", 1)[0].split("/")
    if len(parts) > 2 and parts[1] == "api":
        return "", parts[2]
    if len(parts) > 3 and parts[1] == "apis":
        return parts[2], parts[3]
    return "", "v1"


def _csv_templates() -> list[dict[str, Any]]:
    """Full v1 Events rebuilt from the seed CSV rows (the PerfSPEC recording's own traffic)."""
    import gzip

    source = SEED_CSV if SEED_CSV.is_file() else SAMPLE_CSV
    opener = gzip.open if source.suffix == ".gz" else open
    events = []
    with opener(source, "rt", newline="") as handle:  # type: ignore[operator]
        for row in csv.reader(handle):
            if len(row) != 15:
                continue
            _host, _ts, user, verb, resource, sub, name, _rname, uri, audit_id, stage, code, *_ = row
            prefix = next(p for p in _GROUPS if user.startswith(p))
            agent = next(a for p, a in _AGENTS.items() if user.startswith(p))
            group, version = _api(uri)
            event: dict[str, Any] = {
                "kind": "Event",
                "apiVersion": "audit.k8s.io/v1",
                "level": "Metadata",
                "auditID": audit_id,
                "stage": stage,
                "requestURI": uri,
                "verb": verb,
                "user": {"username": user, "groups": _GROUPS[prefix]},
                "sourceIPs": ["10.0.0.4" if user.startswith("system:node:") else "192.168.10.11"],
                "userAgent": agent,
            }
            if resource:
                ref: dict[str, Any] = {"resource": resource}
                if (ns := _namespace(uri)) is not None:
                    ref["namespace"] = ns
                if name:
                    ref["name"] = name
                if group:
                    ref["apiGroup"] = group
                ref["apiVersion"] = version
                if sub:
                    ref["subresource"] = sub
                event["objectRef"] = ref
            event["responseStatus"] = {"metadata": {}, "code": int(code or 200)}
            event["requestReceivedTimestamp"] = ""
            event["stageTimestamp"] = ""
            event["annotations"] = {
                "authorization.k8s.io/decision": "allow",
                "authorization.k8s.io/reason": f'RBAC: allowed by ClusterRoleBinding "system:{verb}" of '
                f'ClusterRole "system:{resource or "discovery"}" to User "{user}"',
            }
            events.append(event)
    return events


def _sample_templates() -> list[dict[str, Any]]:
    """The real JSON samples, bodies stripped and level set to Metadata (as the PerfSPEC policy logs)."""
    events = []
    for path in sorted(SAMPLES.rglob("*")) if SAMPLES.is_dir() else []:
        if not path.is_file():
            continue
        for line in path.read_bytes().splitlines():
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(value, dict) and value.get("kind") == "Event":
                value.pop("requestObject", None)
                value.pop("responseObject", None)
                value["level"] = "Metadata"
                events.append(value)
    return events


def build_log(size_mb: int, path: Path, seed: int = 7) -> Path:
    """Write ``size_mb`` MB of JSON lines to ``path`` (reused when it already has that size)."""
    target = size_mb * MB
    if path.is_file() and path.stat().st_size >= target and path.stat().st_size < target + 4 * MB:
        return path
    templates = _csv_templates() + _sample_templates()
    rng = random.Random(seed)
    clock = datetime(2024, 5, 1, tzinfo=UTC)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb", buffering=8 * MB) as handle:
        while written < target:
            chunk = []
            fresh: dict[str, str] = {}  # the stages of one request keep sharing one (new) audit ID
            for template in templates:
                clock += timedelta(microseconds=rng.randint(50, 4000))
                event = dict(template)
                original = template["auditID"]
                if original not in fresh:
                    fresh[original] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                event["auditID"] = fresh[original]
                received = clock.isoformat(timespec="microseconds").replace("+00:00", "Z")
                done = (clock + timedelta(microseconds=rng.randint(300, 9000))).isoformat(
                    timespec="microseconds"
                )
                event["requestReceivedTimestamp"] = received
                event["stageTimestamp"] = done.replace("+00:00", "Z")
                event.pop("timestamp", None)
                chunk.append(orjson.dumps(event))
            for line in chunk:
                handle.write(line + b"\n")
                written += len(line) + 1
                if written >= target:
                    break
    tmp.replace(path)
    return path


# --- contenders (each runs in its own subprocess) ------------------------------------------------------

#: The 17 fields ``perfspec clean`` keeps, as (output column, JSON path); DuckDB and Polars copy these.
FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("audit_id", ("auditID",)),
    ("stage", ("stage",)),
    ("request_received_at", ("requestReceivedTimestamp",)),
    ("stage_at", ("stageTimestamp",)),
    ("verb", ("verb",)),
    ("username", ("user", "username")),
    ("user_agent", ("userAgent",)),
    ("source_ip", ("sourceIPs",)),  # the first address, as perfspec keeps it
    ("namespace", ("objectRef", "namespace")),
    ("resource", ("objectRef", "resource")),
    ("subresource", ("objectRef", "subresource")),
    ("name", ("objectRef", "name")),
    ("api_group", ("objectRef", "apiGroup")),
    ("api_version", ("objectRef", "apiVersion")),
    ("response_code", ("responseStatus", "code")),
    ("request_uri", ("requestURI",)),
    ("level", ("level",)),
)
_DUCKDB_COLUMNS = (
    "{auditID: 'VARCHAR', stage: 'VARCHAR', requestReceivedTimestamp: 'TIMESTAMPTZ', "
    "stageTimestamp: 'TIMESTAMPTZ', verb: 'VARCHAR', user: 'STRUCT(username VARCHAR)', userAgent: 'VARCHAR', "
    "sourceIPs: 'VARCHAR[]', objectRef: 'STRUCT(namespace VARCHAR, resource VARCHAR, subresource VARCHAR, "
    "name VARCHAR, apiGroup VARCHAR, apiVersion VARCHAR)', responseStatus: 'STRUCT(code INTEGER)', "
    "requestURI: 'VARCHAR', level: 'VARCHAR'}"
)


def _orjson_loop(path: str) -> dict[str, Any]:
    """The ceiling: parse each line with orjson and read five fields; write nothing."""
    count = 0
    checksum = 0
    with open(path, "rb", buffering=4 * MB) as handle:
        for line in handle:
            event = orjson.loads(line)
            fields = (
                event.get("auditID"),
                event.get("verb"),
                event.get("stage"),
                event.get("requestReceivedTimestamp"),
                (event.get("objectRef") or {}).get("resource"),
            )
            checksum += len(fields)
            count += 1
    return {"events": count}


def _pandas_baseline(path: str, out: str) -> dict[str, Any]:
    """The plain-pandas way: read_json(lines=True) + json_normalize + to_parquet."""
    import pandas as pd

    frame = pd.read_json(path, lines=True, dtype=False)
    flat = pd.json_normalize(frame.to_dict(orient="records"))
    for column in flat.columns:  # lists (sourceIPs, user.groups) -> JSON text so Parquet accepts them
        if flat[column].dtype == object and flat[column].map(lambda v: isinstance(v, (list, dict))).any():
            flat[column] = flat[column].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    flat.to_parquet(out, index=False)
    return {"events": len(flat)}


def duckdb_sql(path: str, out: str) -> str:
    """DuckDB's plain JSON -> Parquet copy of the same 17 fields, typed like events.parquet (timestamps
    parsed, code as INTEGER); no stage merge, no rejects: what a one-line SQL copy does."""
    picks = []
    for column, json_path in FIELDS:
        head, *rest = json_path
        expr = f'"{head}"' + "".join(f".{part}" for part in rest)
        picks.append(f"{expr}[1] AS {column}" if head == "sourceIPs" else f"{expr} AS {column}")
    source = f"read_json('{path}', format='newline_delimited', columns={_DUCKDB_COLUMNS})"
    return f"COPY (SELECT {', '.join(picks)} FROM {source}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"


def _duckdb_copy(path: str, out: str) -> dict[str, Any]:
    """Run :func:`duckdb_sql` with one thread per CPU."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads={os.cpu_count() or 1}")
    copied = con.execute(duckdb_sql(path, out)).fetchone()
    return {"events": int(copied[0]) if copied else -1}


def _polars_sink(path: str, out: str) -> dict[str, Any]:
    """Polars' lazy NDJSON scan with an explicit schema, the same fields flattened, streamed to Parquet.
    The timestamps are read as text and then parsed: a ``Datetime`` in the scan's schema is ~6x slower
    (1.9 s vs 0.3 s on 50 MB, polars 2.1)."""
    import polars as pl
    import pyarrow.parquet as pq

    text = pl.Utf8
    ref = ("namespace", "resource", "subresource", "name", "apiGroup", "apiVersion")
    schema: dict[str, Any] = {
        "auditID": text,
        "stage": text,
        "requestReceivedTimestamp": text,
        "stageTimestamp": text,
        "verb": text,
        "user": pl.Struct({"username": text}),
        "userAgent": text,
        "sourceIPs": pl.List(text),
        "objectRef": pl.Struct(dict.fromkeys(ref, text)),
        "responseStatus": pl.Struct({"code": pl.Int32}),
        "requestURI": text,
        "level": text,
    }
    picks = []
    for column, (head, *rest) in FIELDS:
        expr = pl.col(head)
        if rest:
            expr = expr.struct.field(rest[0])
        elif head == "sourceIPs":
            expr = expr.list.first()
        elif head.endswith("Timestamp"):
            expr = expr.str.to_datetime(time_unit="us", time_zone="UTC")
        picks.append(expr.alias(column))
    pl.scan_ndjson(path, schema=schema).select(picks).sink_parquet(out, compression="zstd")
    return {"events": pq.read_metadata(out).num_rows}


def _prefix(path: Path, limit: int, out: Path) -> Path:
    """The first ``limit`` bytes of ``path``, cut at a line end (reused when already there)."""
    if out.is_file() and limit - 4 * MB < out.stat().st_size <= limit:
        return out
    with open(path, "rb") as src, open(out, "wb") as dst:
        data = src.read(limit)
        dst.write(data[: data.rfind(b"\n") + 1])
    return out


def _base_env() -> dict[str, str]:
    """This environment without a native-scanner override, so "defaults" means the defaults."""
    return {k: v for k, v in os.environ.items() if k != "PERFSPEC_CLEAN__NATIVE"}


def _native_built() -> bool:
    """Whether the native scanner is there; without it every ``perfspec clean`` row is the Python path."""
    from importlib.util import find_spec

    return find_spec("perfspec.audit._scan") is not None


def _run(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a contender; its JSON answer plus wall time and peak RSS (MB, via GNU time or /proc)."""
    time_bin = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    with tempfile.NamedTemporaryFile(prefix="rss-", suffix=".txt") as rss_file:
        command = [time_bin, "-f", "%M", "-o", rss_file.name, *argv] if time_bin else argv
        start = time.perf_counter()
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env={**_base_env(), **(env or {})},
        )
        peak_kb = 0
        status_path = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None and not time_bin:  # fallback: poll VmHWM of the contender itself
            with contextlib.suppress(OSError):
                for line in status_path.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kb = max(peak_kb, int(line.split()[1]))
            time.sleep(0.02)
        stdout, stderr = proc.communicate()
        wall = time.perf_counter() - start
        if time_bin:
            peak_kb = int(Path(rss_file.name).read_text().strip().splitlines()[-1])
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    answer = json.loads(stdout) if stdout.strip() else {}
    answer["wall_s"] = wall
    answer["peak_rss_mb"] = peak_kb * 1024 / MB
    return answer


def _worker(argv: list[str]) -> None:
    """Entry point of the contender subprocesses: ``python -m bench.clean_bench --worker KIND ...``."""
    kind, path = argv[0], argv[1]
    if kind == "orjson":
        result = _orjson_loop(path)
    elif kind == "pandas":
        result = _pandas_baseline(path, argv[2])
    elif kind == "duckdb":
        result = _duckdb_copy(path, argv[2])
    elif kind == "polars":
        result = _polars_sink(path, argv[2])
    else:
        raise SystemExit(f"unknown worker {kind}")
    print(json.dumps(result))


# --- the mixed file (issue 15: bad lines must give the same outputs and cost little) -------------------

BAD_EVERY = 10_000  # one bad line per this many lines
V1BETA1_EVERY = 1_000  # one good line in this many rewritten as an audit.k8s.io/v1beta1 event
BAD_KINDS = ("torn", "2mb-line", "non-utf8", "invalid-json")


def _v1beta1(line: bytes) -> bytes:
    """The same event as ``audit.k8s.io/v1beta1`` writes it here: one ``timestamp`` instead of
    ``requestReceivedTimestamp`` + ``stageTimestamp`` (readers.event_row falls back to it for both)."""
    event = orjson.loads(line)
    event["apiVersion"] = "audit.k8s.io/v1beta1"
    event["timestamp"] = event.pop("requestReceivedTimestamp", None)
    event.pop("stageTimestamp", None)
    return orjson.dumps(event)


def _bad_line(kind: str, line: bytes, rng: random.Random) -> bytes:
    """One line of ``kind`` made from a good ``line`` (no newline)."""
    if kind == "torn":  # cut in the middle, the rest lost
        return line[: rng.randint(len(line) // 4, 3 * len(line) // 4)]
    if kind == "2mb-line":  # still a valid event, kept: a 2 MB annotation
        event = orjson.loads(line)
        event["annotations"] = {**(event.get("annotations") or {}), "bench.perfspec/padding": "p" * 2 * MB}
        return orjson.dumps(event)
    if kind == "non-utf8":  # inside a string: the audit ID (read) or the last string (skipped)
        at = line.find(b'"auditID":"') + 11 if rng.random() < 0.5 else line.rfind(b'"', 0, len(line) - 1)
        return line[:at] + b"\xff\xfe\xc3" + line[at:]
    return line.replace(b'":', b'"', 1)  # invalid JSON: the first colon dropped


def build_mixed(source: Path, size_mb: int, path: Path, seed: int = 15) -> tuple[Path, dict[str, int]]:
    """``source``'s first ``size_mb`` MB with every ``BAD_EVERY``-th line made bad (the kinds in turn)
    and every ``V1BETA1_EVERY``-th good line rewritten as v1beta1; cached, with its counts beside it."""
    counts_path = path.with_suffix(".counts.json")
    if path.is_file() and counts_path.is_file():
        return path, json.loads(counts_path.read_text())
    target = size_mb * MB
    rng = random.Random(seed)
    counts = dict.fromkeys(("lines", "v1beta1", *BAD_KINDS), 0)
    written = 0
    tmp = path.with_suffix(".tmp")
    with open(source, "rb", buffering=8 * MB) as src, open(tmp, "wb", buffering=8 * MB) as dst:
        for number, line in enumerate(src, 1):
            line = line.rstrip(b"\n")
            if number % BAD_EVERY == 0:
                kind = BAD_KINDS[(number // BAD_EVERY - 1) % len(BAD_KINDS)]
                line = _bad_line(kind, line, rng)
                counts[kind] += 1
            elif number % V1BETA1_EVERY == V1BETA1_EVERY // 2:
                line = _v1beta1(line)
                counts["v1beta1"] += 1
            dst.write(line + b"\n")
            written += len(line) + 1
            counts["lines"] = number
            if written >= target:
                break
    tmp.replace(path)
    counts_path.write_text(json.dumps(counts))
    return path, counts


def _same_outputs(left: Path, right: Path) -> dict[str, bool]:
    """Whether each output file of two ``perfspec clean`` runs is byte-identical."""
    names = ("events.parquet", "rejects.jsonl", "summary.json")
    return {name: filecmp.cmp(left / name, right / name, shallow=False) for name in names}


# --- one measurement per contender, interleaved and repeated -------------------------------------------


@dataclass
class Contender:
    """A command to time, the file it reads, and its runs (seconds, peak RSS MB)."""

    name: str
    argv: list[str]
    input: Path
    env: dict[str, str] | None = None
    out: Path | None = None  # removed after each run unless ``keep``
    keep: bool = False
    events: int = 0
    answer: dict[str, Any] = field(default_factory=dict)
    runs: list[tuple[float, float]] = field(default_factory=list)

    def run(self) -> None:
        if self.out is not None and self.out.exists():
            shutil.rmtree(self.out) if self.out.is_dir() else self.out.unlink()
        answer = _run(self.argv, self.env)
        self.runs.append((answer["wall_s"], answer["peak_rss_mb"]))
        self.events = int(answer.get("events", answer.get("read", 0)))
        self.answer = answer
        if self.out is not None and not self.keep and self.out.exists():
            shutil.rmtree(self.out) if self.out.is_dir() else self.out.unlink()

    def stats(self) -> dict[str, Any]:
        seconds = sorted(s for s, _ in self.runs)
        size = self.input.stat().st_size / MB
        best, median = seconds[0], statistics.median(seconds)
        return {
            "input_mb": round(size, 1),
            "events": self.events,
            "runs": len(seconds),
            "best_s": round(best, 2),
            "median_s": round(median, 2),
            "mb_per_s": round(size / best, 1),
            "mb_per_s_median": round(size / median, 1),
            "events_per_s": round(self.events / best),
            "peak_rss_mb": round(max(rss for _, rss in self.runs), 1),
        }


def _measure(contenders: list[Contender], repeat: int, once: frozenset[str] = frozenset()) -> None:
    """Run every contender ``repeat`` times, round-robin, starting one later each round, so a noisy
    neighbour spreads over all of them; the names in ``once`` run in the first round only."""
    for round_ in range(repeat):
        shift = round_ % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            if round_ and contender.name in once:
                continue
            print(f"  [{round_ + 1}/{repeat}] {contender.name} ...", end=" ", flush=True, file=sys.stderr)
            contender.run()
            seconds, rss = contender.runs[-1]
            print(f"{seconds:.2f} s, {rss:.0f} MB", file=sys.stderr, flush=True)


def _clean_argv(log: Path, out: Path, workers: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "perfspec",
        "clean",
        str(log),
        "--out",
        str(out),
        "--json",
        "--no-progress",
        *workers,
    ]


def _worker_argv(kind: str, *paths: Path) -> list[str]:
    return [sys.executable, "-m", "bench.clean_bench", "--worker", kind, *map(str, paths)]


PERFSPEC, PYTHON_PATH, DUCKDB, POLARS = (
    "perfspec clean",
    "perfspec clean, native off",
    "DuckDB COPY",
    "Polars sink",
)
ORJSON, PANDAS = "orjson loop (ceiling)", "pandas baseline"
NATIVE_OFF = {"PERFSPEC_CLEAN__NATIVE": "false"}


def _bench_size(args: argparse.Namespace, size_mb: int, first: bool, work: Path) -> dict[str, Any]:
    """All contenders on one input size, in one window; their stats and the ratios."""
    log = build_log(size_mb, OUT / f"audit-{size_mb}mb.jsonl")
    print(f"input: {log} ({log.stat().st_size / MB:,.0f} MB)", file=sys.stderr, flush=True)
    workers = [] if args.workers is None else ["--workers", str(args.workers)]
    contenders = [
        Contender(PERFSPEC, _clean_argv(log, work / "clean", workers), log, out=work / "clean"),
        Contender(DUCKDB, _worker_argv("duckdb", log, work / "duck.parquet"), log, out=work / "duck.parquet"),
        Contender(POLARS, _worker_argv("polars", log, work / "pl.parquet"), log, out=work / "pl.parquet"),
        Contender(ORJSON, _worker_argv("orjson", log), log),
    ]
    if first or args.all:
        out = work / "clean-py"
        contenders.insert(1, Contender(PYTHON_PATH, _clean_argv(log, out, workers), log, NATIVE_OFF, out))
    if args.pandas_cap_mb > 0 and (first or args.all):
        prefix = _prefix(log, min(log.stat().st_size, args.pandas_cap_mb * MB), work / "prefix.jsonl")
        out = work / "pd.parquet"
        contenders.append(Contender(PANDAS, _worker_argv("pandas", prefix, out), prefix, out=out))
    _measure(contenders, args.repeat, once=frozenset({PYTHON_PATH, PANDAS}))
    results = {c.name: c.stats() for c in contenders}
    ours = results[PERFSPEC]

    def ratio(name: str) -> dict[str, float] | None:
        if name not in results:
            return None
        theirs = results[name]
        return {
            "best": round(ours["mb_per_s"] / theirs["mb_per_s"], 2),
            "median": round(ours["mb_per_s_median"] / theirs["mb_per_s_median"], 2),
        }

    ratios = {name: ratio(name) for name in (DUCKDB, POLARS, ORJSON, PANDAS, PYTHON_PATH)}
    return {"size_mb": size_mb, "input_mb": ours["input_mb"], "results": results, "ratios": ratios}


def _bench_mixed(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The mixed file cleaned with the native scanner on and off (outputs must be byte-identical), and
    with it on against the clean prefix of the same size: what the bad lines cost."""
    source = build_log(1000, OUT / "audit-1000mb.jsonl")
    mixed, counts = build_mixed(source, args.mixed_mb, OUT / f"audit-mixed-{args.mixed_mb}mb.jsonl")
    prefix = _prefix(source, mixed.stat().st_size, OUT / f"audit-prefix-{args.mixed_mb}mb.jsonl")
    print(f"mixed: {mixed} ({mixed.stat().st_size / MB:,.0f} MB, {counts})", file=sys.stderr, flush=True)
    native, python_path = work / "mixed-native", work / "mixed-python"
    contenders = [
        Contender("mixed, native", _clean_argv(mixed, native, []), mixed, out=native, keep=True),
        Contender("clean prefix, native", _clean_argv(prefix, work / "pre", []), prefix, out=work / "pre"),
        Contender(
            "mixed, native off", _clean_argv(mixed, python_path, []), mixed, NATIVE_OFF, python_path, True
        ),
    ]
    _measure(contenders, args.repeat, once=frozenset({"mixed, native off"}))
    results = {c.name: c.stats() for c in contenders}
    summary = contenders[0].answer
    on, clean = results["mixed, native"], results["clean prefix, native"]
    return {
        "mixed_mb": on["input_mb"],
        "built_from": counts,
        "read": summary.get("read"),
        "kept": summary.get("kept"),
        "rejected": summary.get("rejected"),
        "reject_reasons": summary.get("reject_reasons"),
        "identical": _same_outputs(native, python_path),
        "results": results,
        "bad_line_cost": {
            "mb_per_s": [on["mb_per_s"], clean["mb_per_s"]],
            "slowdown_pct": round((clean["mb_per_s"] / on["mb_per_s"] - 1) * 100, 1),
            "extra_s_per_bad_line": round(
                (on["best_s"] - clean["best_s"]) / max(1, sum(counts[k] for k in BAD_KINDS)), 4
            ),
        },
    }


# --- the report --------------------------------------------------------------------------------------

DUCKDB_TARGET, RSS_CAP_MB, RSS_SIZE_MB, FLAT_MAX = 0.8, 512, 2000, 1.10


def _machine() -> str:
    from importlib.metadata import version

    memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    libraries = ", ".join(f"{name} {version(name)}" for name in ("pyarrow", "duckdb", "polars", "orjson"))
    native = "built" if _native_built() else "NOT built (every perfspec row is the pure-Python path)"
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {memory} GB RAM, Python {platform.python_version()}, "
        f"{libraries}; native scanner {native}"
    )


def _acceptance(sizes: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 15's bars: speed >= 0.8x DuckDB per size, peak RSS <= 512 MB at 2 GB, RSS flat in size."""
    speed = {
        str(s["size_mb"]): {**s["ratios"][DUCKDB], "met": s["ratios"][DUCKDB]["best"] >= DUCKDB_TARGET}
        for s in sizes
    }
    rss = {s["size_mb"]: s["results"][PERFSPEC]["peak_rss_mb"] for s in sizes}
    at = RSS_SIZE_MB if RSS_SIZE_MB in rss else max(rss)
    accepted: dict[str, Any] = {
        "speed_vs_duckdb": speed,
        "peak_rss": {"size_mb": at, "mb": rss[at], "met": rss[at] <= RSS_CAP_MB},
    }
    if len(rss) > 1:
        small, large = min(rss), max(rss)
        growth = rss[large] / rss[small]
        accepted["rss_flat"] = {
            "sizes_mb": [small, large],
            "ratio": round(growth, 2),
            "mb_per_gb": round((rss[large] - rss[small]) / ((large - small) / 1000), 1),
            "met": growth <= FLAT_MAX,
        }
    return accepted


def _verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def _size_table(size: dict[str, Any]) -> list[str]:
    ours = size["results"][PERFSPEC]
    lines = [
        f"### {size['size_mb']:,} MB input ({ours['events']:,} events)",
        "",
        "| contender | input MB | events | best s | median s | MB/s | events/s | peak RSS MB | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in size["results"].items():
        lines.append(
            f"| {name} | {r['input_mb']:,.0f} | {r['events']:,} | {r['best_s']:.2f} | {r['median_s']:.2f} | "
            f"{r['mb_per_s']:,.1f} | {r['events_per_s']:,} | {r['peak_rss_mb']:,.0f} | {r['runs']} |"
        )
    parts = [
        f"{ratio['best']:.2f}x {name} (median {ratio['median']:.2f}x)"
        for name, ratio in size["ratios"].items()
        if ratio is not None
    ]
    lines += ["", f"perfspec clean (speed, best run) = {'; '.join(parts)}.", ""]
    return lines


def _mixed_lines(mixed: dict[str, Any]) -> list[str]:
    built = mixed["built_from"]
    bad = sum(built[k] for k in BAD_KINDS)
    same = mixed["identical"]
    cost = mixed["bad_line_cost"]
    lines = [
        f"### Mixed file ({mixed['mixed_mb']:,.0f} MB)",
        "",
        f"The 1,000 MB input's first {mixed['mixed_mb']:,.0f} MB, {built['lines']:,} lines: one in "
        f"{BAD_EVERY:,} made bad ({bad} in all: " + ", ".join(f"{built[k]} {k}" for k in BAD_KINDS) + "), "
        f"and {built['v1beta1']} good lines rewritten as `audit.k8s.io/v1beta1` (one `timestamp`). "
        f"perfspec read {mixed['read']:,}, kept {mixed['kept']:,}, rejected {mixed['rejected']:,} "
        f"({mixed['reject_reasons']}).",
        "",
        "| run | input MB | best s | median s | MB/s | events/s | peak RSS MB | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in mixed["results"].items():
        lines.append(
            f"| {name} | {r['input_mb']:,.0f} | {r['best_s']:.2f} | {r['median_s']:.2f} | "
            f"{r['mb_per_s']:,.1f} | {r['events_per_s']:,} | {r['peak_rss_mb']:,.0f} | {r['runs']} |"
        )
    verdict = "byte-identical" if all(same.values()) else "**DIFFERENT**"
    lines += [
        "",
        f"Native on vs off: {verdict} ("
        + ", ".join(f"{name} {'same' if ok else 'differs'}" for name, ok in same.items())
        + ").",
        f"Cost of the bad lines (native): {cost['mb_per_s'][0]:,.1f} MB/s on the mixed file vs "
        f"{cost['mb_per_s'][1]:,.1f} MB/s on the clean prefix of the same size: "
        f"{cost['slowdown_pct']:+.1f} % time, {cost['extra_s_per_bad_line'] * 1e3:+.1f} ms per bad line.",
        "",
    ]
    return lines


def _markdown(report: dict[str, Any]) -> str:
    """The report as this benchmark's section of RESULTS.md."""
    lines = [
        f"## clean (`python -m bench clean`) — {report['date']}",
        "",
        f"Machine: {report['machine']}; 1-minute load average {report['load_before']:.2f} before, "
        f"{report['load_after']:.2f} after. Command: `{report['command']}`. Each contender runs in its own "
        f"subprocess (wall time; peak RSS from GNU `time`, worker processes included, max over the runs), "
        f"interleaved, {report['repeat']} round(s): best and median. MB = 10^6 bytes; MB/s and events/s "
        f"from the best run. DuckDB and Polars copy the same 17 fields with a typed schema and nothing "
        f"else (no stage merge, no rejects, no source file/line); `{PYTHON_PATH}` is the pure-Python path "
        f"(`PERFSPEC_CLEAN__NATIVE=false`); pandas reads a prefix only.",
        "",
    ]
    for size in report["sizes"]:
        lines += _size_table(size)
    accepted = report["acceptance"]
    lines += ["### Acceptance (issue 15)", ""]
    for size_mb, speed in accepted["speed_vs_duckdb"].items():
        lines.append(
            f"- {int(size_mb):,} MB: perfspec clean = {speed['best']:.2f}x DuckDB "
            f"(median {speed['median']:.2f}x); target >= {DUCKDB_TARGET}x: {_verdict(speed['met'])}."
        )
    rss = accepted["peak_rss"]
    lines.append(
        f"- peak RSS at {rss['size_mb']:,} MB: {rss['mb']:,.0f} MB; target <= {RSS_CAP_MB} MB at "
        f"{RSS_SIZE_MB:,} MB: {_verdict(rss['met'])}"
        + (
            "."
            if rss["size_mb"] == RSS_SIZE_MB
            else f" (measured at {rss['size_mb']:,} MB, not {RSS_SIZE_MB:,})."
        )
    )
    if flat := accepted.get("rss_flat"):
        small, large = flat["sizes_mb"]
        lines.append(
            f"- RSS flat: {large:,} MB / {small:,} MB = {flat['ratio']:.2f}x "
            f"({flat['mb_per_gb']:+,.1f} MB per extra GB); target <= {FLAT_MAX}x: {_verdict(flat['met'])}."
        )
    lines.append("")
    if report.get("mixed"):
        lines += _mixed_lines(report["mixed"])
    return "\n".join(lines).rstrip("\n")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench clean", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size-mb", type=int, nargs="+", default=[1000, 2000], help="sizes of the raw logs (MB, 10^6 B)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds of all contenders (best and median)")
    parser.add_argument(
        "--all", action="store_true", help="the native-off path and pandas on every size, not just the first"
    )
    parser.add_argument(
        "--pandas-cap-mb",
        type=int,
        default=200,
        help="pandas reads only this prefix (it holds it all in memory); 0: skip pandas",
    )
    parser.add_argument("--mixed", action="store_true", help="also the mixed file (bad lines, v1beta1)")
    parser.add_argument(
        "--mixed-mb", type=int, default=200, help="size of the mixed file (MB; implies --mixed)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the cleaned outputs in bench/out/")
    parser.add_argument(
        "--workers", type=int, default=None, help="perfspec clean --workers (default: its own)"
    )
    parser.add_argument("--write", action="store_true", help="replace the clean section of bench/RESULTS.md")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md", help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker)
        return
    if args.mixed_mb != parser.get_default("mixed_mb"):
        args.mixed = True

    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "command": ".venv/bin/python -m bench clean " + " ".join(argv),
        "repeat": args.repeat,
        "load_before": os.getloadavg()[0],
        "sizes": [],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="clean-bench-", dir=OUT))
    try:
        for number, size_mb in enumerate(args.size_mb):
            report["sizes"].append(_bench_size(args, size_mb, number == 0, work))
        if args.mixed:
            report["mixed"] = _bench_mixed(args, work)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    report["load_after"] = os.getloadavg()[0]
    report["acceptance"] = _acceptance(report["sizes"])
    text = _markdown(report)
    print(text)
    print(json.dumps(report))
    if args.write:
        write_section(args.results, "clean", text)
    if report.get("mixed") and not all(report["mixed"]["identical"].values()):
        raise SystemExit("mixed file: native on and off gave different outputs")


if __name__ == "__main__":
    main()
