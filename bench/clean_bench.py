"""Benchmark ``perfspec clean`` against a pandas baseline and a bare orjson loop, on the same file.

The input is a large raw audit log (JSON lines, ``audit.k8s.io/v1``, Metadata level like the PerfSPEC
recording) built by replaying real events: every row of the seed Logstash CSV is expanded into a full
Event (user groups, source IP, user agent, objectRef, responseStatus, annotations, both timestamps),
and the JSON samples of ``../shared/data/audit-samples`` are mixed in with their bodies stripped; each
replayed event gets a fresh audit ID and a fresh, increasing timestamp. Each contender runs in its own
subprocess so its peak RSS (``ru_maxrss`` from ``os.wait4``) is its own.

    python -m bench clean                   # 1 GB input (built once, cached in bench/out/)
    python -m bench clean --size-mb 200     # quicker
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

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


def _prefix(path: Path, limit: int, out: Path) -> Path:
    """The first ``limit`` bytes of ``path``, cut at a line end."""
    with open(path, "rb") as src, open(out, "wb") as dst:
        data = src.read(limit)
        dst.write(data[: data.rfind(b"\n") + 1])
    return out


def _run(argv: list[str]) -> dict[str, Any]:
    """Run a contender; its JSON answer plus wall time and peak RSS (MB, via GNU time or /proc)."""
    time_bin = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    with tempfile.NamedTemporaryFile(prefix="rss-", suffix=".txt") as rss_file:
        command = [time_bin, "-f", "%M", "-o", rss_file.name, *argv] if time_bin else argv
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
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
    else:
        raise SystemExit(f"unknown worker {kind}")
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench clean", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1000, help="size of the raw log to clean (MB, 10^6 B)")
    parser.add_argument(
        "--pandas-cap-mb",
        type=int,
        default=200,
        help="pandas reads only this prefix (it holds it all in memory)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the cleaned output in bench/out/")
    parser.add_argument(
        "--workers", type=int, default=None, help="perfspec clean --workers (default: its own)"
    )
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker)
        return

    log = build_log(args.size_mb, OUT / f"audit-{args.size_mb}mb.jsonl")
    size = log.stat().st_size
    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="clean-bench-", dir=OUT))
    try:
        print(f"input: {log} ({size / MB:,.0f} MB)", flush=True)
        workers = [] if args.workers is None else ["--workers", str(args.workers)]
        clean_cmd = [
            "-m",
            "perfspec",
            "clean",
            str(log),
            "--out",
            str(work / "clean"),
            "--json",
            "--no-progress",
        ]
        perfspec = _run([python, *clean_cmd, *workers])
        events = perfspec["read"]
        ceiling = _run([python, "-m", "bench.clean_bench", "--worker", "orjson", str(log)])
        cap = min(size, args.pandas_cap_mb * MB)
        pandas_input = log if cap >= size else _prefix(log, cap, work / "prefix.jsonl")
        pandas_size = pandas_input.stat().st_size
        pandas = _run(
            [
                python,
                "-m",
                "bench.clean_bench",
                "--worker",
                "pandas",
                str(pandas_input),
                str(work / "pd.parquet"),
            ]
        )
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    def rate(mb: float, seconds: float) -> float:
        return mb / seconds if seconds else float("nan")

    rows = {
        "perfspec clean": (size, events, perfspec),
        "orjson loop (ceiling)": (size, ceiling["events"], ceiling),
        "pandas baseline": (pandas_size, pandas["events"], pandas),
    }
    report: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "load_avg_1m_at_end": os.getloadavg()[0],
        "input_mb": size / MB,
        "results": {},
    }
    print(
        f"{'contender':24} {'input MB':>9} {'events':>11} {'s':>8} {'MB/s':>8} {'events/s':>11} "
        f"{'peak RSS MB':>12}"
    )
    for name, (nbytes, count, result) in rows.items():
        mbps = rate(nbytes / MB, result["wall_s"])
        eps = count / result["wall_s"]
        report["results"][name] = {
            "input_mb": round(nbytes / MB, 1),
            "events": count,
            "seconds": round(result["wall_s"], 2),
            "mb_per_s": round(mbps, 1),
            "events_per_s": round(eps),
            "peak_rss_mb": round(result["peak_rss_mb"], 1),
        }
        print(
            f"{name:24} {nbytes / MB:9.0f} {count:11,} {result['wall_s']:8.1f} {mbps:8.1f} {eps:11,.0f} "
            f"{result['peak_rss_mb']:12.0f}"
        )
    ours = report["results"]["perfspec clean"]["mb_per_s"]
    vs_pandas = ours / report["results"]["pandas baseline"]["mb_per_s"]
    vs_ceiling = ours / report["results"]["orjson loop (ceiling)"]["mb_per_s"]
    report["ratios"] = {"vs_pandas": round(vs_pandas, 1), "vs_orjson_loop": round(vs_ceiling, 2)}
    capped = " (pandas on a prefix: it holds the whole file in memory)" if pandas_size < size else ""
    print(
        f"perfspec clean = {vs_pandas:.1f}x pandas (target >= 10), "
        f"{vs_ceiling:.2f}x orjson loop (target >= 0.5)"
    )
    print(f"load average (1 min) at the end: {report['load_avg_1m_at_end']:.2f}{capped}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
