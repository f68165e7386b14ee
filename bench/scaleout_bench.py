"""``python -m bench scaleout``: `clean` over many files, sequential vs pass 1 on a Dask `LocalCluster`.

Inputs: ``--files`` real-shaped JSON-lines logs of ``--size-mb`` each (the clean benchmark's generator),
half of them gzip-compressed (a compressed file cannot be split into byte ranges: the case where only
a cluster spreads the work). Contenders: ``clean_sources`` in one process (``workers=1``), and with the
Dask executor (``--dask-workers`` worker processes; the cluster's start-up is timed apart). The outputs
are checked byte-identical.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.clean_bench import build_log

MB = 1024 * 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench scaleout", description=__doc__)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--size-mb", type=int, default=40)
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("bench/out/scaleout"))
    args = parser.parse_args(argv)

    from perfspec.audit.clean import clean_sources
    from perfspec.scaleout import clean_executor
    from perfspec.settings import CleanSettings, PrefectSettings

    args.work.mkdir(parents=True, exist_ok=True)
    base = build_log(args.size_mb, args.work / f"base-{args.size_mb}mb.jsonl")
    sources = []
    for index in range(args.files):
        target = args.work / f"log-{args.size_mb}mb-{index:02d}.jsonl"
        if index % 2:
            target = args.work / f"log-{args.size_mb}mb-{index:02d}.jsonl.gz"
            if not target.is_file():
                with open(base, "rb") as src, gzip.open(target, "wb", compresslevel=1) as dst:
                    shutil.copyfileobj(src, dst, 8 * MB)
        elif not target.is_file():
            shutil.copyfile(base, target)
        sources.append(target)
    settings = CleanSettings(workers=1)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        out = Path(tmp)
        began = time.perf_counter()
        clean_sources(sources, out / "sequential", settings)
        sequential = time.perf_counter() - began
        began = time.perf_counter()
        with clean_executor(PrefectSettings(task_runner="dask", dask_workers=args.dask_workers)) as executor:
            started = time.perf_counter() - began
            began = time.perf_counter()
            clean_sources(sources, out / "dask", settings, executor=executor)
            on_dask = time.perf_counter() - began
        same = all(
            (out / "dask" / n).read_bytes() == (out / "sequential" / n).read_bytes()
            for n in ("events.parquet", "rejects.jsonl", "summary.json")
        )
    total = sum(p.stat().st_size for p in sources) / MB
    print(f"## scaleout — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {_cpus()} CPUs")
    print(f"inputs: {args.files} files, {total:,.0f} MB on disk (half gzip), {args.size_mb} MB each unpacked")
    print("| contender | seconds | speed-up |")
    print("| --- | ---: | ---: |")
    print(f"| sequential (one process) | {sequential:.2f} | 1.00x |")
    print(f"| Dask LocalCluster, {args.dask_workers} workers | {on_dask:.2f} | {sequential / on_dask:.2f}x |")
    print(f"cluster start-up (not included): {started:.2f} s; outputs byte-identical: {same}")


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
