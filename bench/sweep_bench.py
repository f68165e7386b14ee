"""``python -m bench sweep``: a whole model sweep on the de-duplicated paper corpus, timed, and every
model's single-window serving latency (NumPy bundle, no TensorFlow) side by side with ``model.predict``.

Why: issue #8 asks that a sweep of >= 6 configurations across >= 3 families finish on 2 cores in < 30 min,
and that any champion (n-gram and mixture included) answer one window in <= 0.3 ms p50. One run measures
both, on the same machine, and writes a dated block into ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
START, END = "<!-- sweep-bench:start -->", "<!-- sweep-bench:end -->"


def _p50_ms(call, repeats: int = 2000, warmup: int = 50) -> float:  # type: ignore[no-untyped-def]
    from bench.predict_bench import _timings

    return float(np.median(_timings(call, repeats, warmup)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=Path, default=REPO / "sample" / "events-dataset.txt")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "sweep")
    parser.add_argument("--families", default="ngram,lstm,gru,transformer,mixture")
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument(
        "--data-dir", type=Path, help="also log to MLflow (parent + child runs) in this data dir's store"
    )
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch RESULTS.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from perfspec.learn.predict import Predictor
    from perfspec.learn.sweep import run_sweep
    from perfspec.settings import Settings

    settings = Settings().with_section("selection", cv_folds=args.cv)
    if args.data_dir:
        settings = settings.with_section("paths", data_dir=args.data_dir)
    began = time.perf_counter()
    outcome = run_sweep(
        args.actions, args.out, settings, args.families.split(","), use_mlflow=bool(args.data_dir), say=print
    )
    wall = time.perf_counter() - began
    metrics = outcome.metrics
    x, _ = outcome.dataset.windows("test")
    rows = []
    keras_ms = None
    for name, info in sorted(metrics["models"].items(), key=lambda kv: -(kv[1].get("train_seconds") or 0)):
        predictor = Predictor.load(outcome.run_dir / "models" / name)
        start = outcome.dataset.segments["test"][0][0]
        window = outcome.dataset.names(start, start + outcome.dataset.window)  # a real window, by name
        p50 = _p50_ms(lambda p=predictor, w=window: p.top_k(w, 5))
        cv = metrics["cv"].get(name, {}).get("top5", {})
        paired = metrics["cv_paired"].get(name, {}).get("top5", {})
        test = metrics["test"][name]
        rows.append(
            f"| {name} | {info['family']} | {test['top1']:.4f} | {test['top5']:.4f} "
            f"| {cv.get('mean', 0):.4f} ± {cv.get('std', 0):.4f} | "
            f"{paired.get('mean', 0):+.4f} ± {paired.get('se') or 0:.4f} | {p50:.3f} |"
        )
        if keras_ms is None and (outcome.run_dir / "models" / name / "model.keras").is_file():
            from perfspec.learn.network import load_network

            model = load_network(outcome.run_dir / "models" / name / "model.keras")
            keras_ms = (name, _p50_ms(lambda m=model: m.predict(x[:1], verbose=0), 100, 5))
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = "\n".join(
        [
            START,
            f"### {when} — `python -m bench sweep` ({platform.machine()}, {os.cpu_count()} CPUs, "
            f"{platform.python_version()})",
            "",
            f"{len(outcome.configs)} neural configurations ({', '.join(c.name for c in outcome.configs)}) + "
            f"n-gram + most frequent + mixture, {args.cv} blocked folds + hold-out each, on "
            f"{metrics['dataset']['actions']:,} actions: **{wall / 60:.1f} min** wall "
            f"(candidate `{metrics['champion_candidate']}`"
            + (", MLflow logging and registration included" if args.data_dir else "")
            + ").",
            "",
            "| model | family | hold-out top-1 | top-5 | CV top-5 mean ± std | paired CV gain vs n-gram | "
            "p50 one window (ms, NumPy bundle) |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"`model.predict` on one window ({keras_ms[0]}): {keras_ms[1]:.1f} ms p50." if keras_ms else "",
            END,
        ]
    )
    print(block)
    (args.out / "bench.json").write_text(json.dumps({"wall_seconds": wall, "rows": rows}, indent=2))
    if not args.no_write:
        text = args.results.read_text()
        if START in text:
            text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
        else:
            text = text.replace(
                "## honest learning",
                "## sweep (`python -m bench sweep`)\n\n" + block + "\n\n## honest learning",
                1,
            )
        args.results.write_text(text)
