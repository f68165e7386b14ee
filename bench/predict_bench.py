"""``python -m bench predict``: single-window prediction latency and training throughput.

Compares, in the same process and on the same model and windows: our NumPy path (``Predictor.top_k``,
including name->id encoding and ranking), the ``tf.function`` fallback, a direct ``model(x)`` call, and
``model.predict``. Training throughput is windows/s of ``perfspec.training.train`` with the default
architecture on the paper corpus. Results go to stdout and to this benchmark's own section of
``bench/RESULTS.md`` (replaced on each run; other sections are left alone).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
START, END = "<!-- predict-bench:start -->", "<!-- predict-bench:end -->"


def _timings(call: Callable[[], object], repeats: int, warmup: int = 5) -> np.ndarray:
    for _ in range(warmup):
        call()
    out = np.empty(repeats)
    for index in range(repeats):
        began = time.perf_counter()
        call()
        out[index] = time.perf_counter() - began
    return out * 1e3  # ms


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench predict", description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=Path, default=REPO / "sample" / "events-dataset.txt")
    parser.add_argument("--model", type=Path, help="existing run dir; default: train one for --epochs")
    parser.add_argument("--epochs", type=int, default=2, help="epochs trained to measure throughput")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls of the fast paths")
    parser.add_argument("--predict-calls", type=int, default=200, help="timed calls of model.predict")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch RESULTS.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import tensorflow as tf

    from perfspec.dataset import build_dataset
    from perfspec.predict import Predictor
    from perfspec.settings import Settings
    from perfspec.training import train

    settings = Settings()
    dataset = build_dataset(args.actions, settings.dataset)
    throughput = None
    with tempfile.TemporaryDirectory(prefix="perfspec-bench-") as tmp:
        run_dir = args.model
        if run_dir is None:
            run_dir = Path(tmp)
            result = train(dataset, settings.train.model_copy(update={"epochs": args.epochs}), run_dir)
            throughput = result.windows_per_second
        predictor = Predictor.load(run_dir)
        model = predictor.model
        x_test, _ = dataset.windows("test")
        rng = np.random.default_rng(0)
        rows = x_test[rng.integers(0, len(x_test), size=64)]
        windows = [predictor.vocab.decode(row) for row in rows]
        one = rows[:1]

        counter = iter(range(10**9))
        results = {
            "numpy top_k (ours)": _timings(
                lambda: predictor.top_k(windows[next(counter) % 64], 5), args.calls
            ),
            "numpy forward only": _timings(lambda: predictor.probabilities_batch(one), args.calls),
            "tf.function": _timings(lambda: predictor._tf_forward(one), args.calls // 4),
            "model(x) direct": _timings(lambda: model(one, training=False), args.calls // 4),
            "model.predict": _timings(lambda: model.predict(one, verbose=0), args.predict_calls),
        }
        reference = model.predict(rows, verbose=0)
        max_diff = float(np.abs(predictor.probabilities_batch(rows) - reference).max())

    p50 = {name: float(np.percentile(t, 50)) for name, t in results.items()}
    p99 = {name: float(np.percentile(t, 99)) for name, t in results.items()}
    speedup = p50["model.predict"] / p50["numpy top_k (ours)"]
    lines = [
        f"### predict latency (single window) — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}; model: window {predictor.window}, vocab {len(predictor.vocab)}, "
        f"LSTM {settings.train.lstm_units}x{settings.train.lstm_layers}; `python -m bench predict`.",
        "",
        "| path | p50 (ms) | p99 (ms) | calls |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {name} | {p50[name]:.3f} | {p99[name]:.3f} | {len(results[name])} |" for name in results),
        "",
        f"Our path is **{speedup:.0f}x** faster than `model.predict` at p50 (target: p50 < 1 ms and >= 20x); "
        f"max |p_numpy - p_predict| over 64 windows = {max_diff:.1e}.",
    ]
    if throughput is not None:
        lines += [
            "",
            f"Training throughput: **{throughput:,.0f} windows/s** ({args.epochs} epochs of "
            f"{len(dataset.windows('train')[1]):,} windows, batch {settings.train.batch_size}, "
            "validation included).",
        ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        _write_section(args.results, text)
        print(f"\nwritten to {args.results}")


def _write_section(path: Path, text: str) -> None:
    """Replace this benchmark's section in RESULTS.md (create the file if absent), atomically."""
    from perfspec.fileio import write_text_atomic

    current = path.read_text() if path.is_file() else "# Benchmark results\n"
    block = f"{START}\n{text}\n{END}"
    if START in current and END in current:
        head, rest = current.split(START, 1)
        current = head + block + rest.split(END, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    write_text_atomic(path, current)


if __name__ == "__main__":
    main()
