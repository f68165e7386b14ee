"""``python -m bench predict``: single-window prediction latency, cold start, training throughput.

Compares, in the same process and on the same model and windows: our NumPy path (``Predictor.top_k``,
including name->id encoding and ranking), the ``tf.function`` fallback, a direct ``model(x)`` call, and
``model.predict``. Cold start (process start -> first answer, wall time and peak RSS of a fresh process)
of ``perfspec predict --model RUN_DIR --top 5 create_namespaces create_serviceaccounts`` and of a bare
``python -c`` that loads a ``Predictor`` and answers once, each with the exported bundle
(``predictor.npz``, no TensorFlow) and without it (the same run dir minus the bundle: Keras); plus the
in-process ``Predictor.load`` time of both. Training throughput is windows/s of
``perfspec.learn.training.train`` with the default architecture on the paper corpus. Results go to stdout and
to this benchmark's own section of ``bench/RESULTS.md`` (replaced on each run; other sections are left
alone).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.results import write_section

REPO = Path(__file__).resolve().parent.parent
CLI_ACTIONS = ("create_namespaces", "create_serviceaccounts")  # the README's example


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
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh processes timed with the bundle")
    parser.add_argument(
        "--cold-runs-keras", type=int, default=3, help="fresh processes timed without it (~10 s each)"
    )
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch RESULTS.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import tensorflow as tf

    from perfspec.learn.dataset import build_dataset
    from perfspec.learn.predict import Predictor
    from perfspec.learn.training import train
    from perfspec.settings import Settings

    settings = Settings()
    dataset = build_dataset(args.actions, settings.dataset)
    throughput = None
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="perfspec-bench-") as tmp:
        run_dir = args.model
        if run_dir is None:
            run_dir = Path(tmp) / "run"
            result = train(dataset, settings.train.model_copy(update={"epochs": args.epochs}), run_dir)
            throughput = result.windows_per_second
        bundled, keras_only = _bundle_and_keras_dirs(Path(run_dir), Path(tmp))
        cold = _cold_starts(bundled, keras_only, Path(tmp), args.cold_runs, args.cold_runs_keras)
        loads = {
            "Predictor.load, bundle": _timings(lambda: Predictor.load(bundled), 50, warmup=2),
            "Predictor.load, Keras (TF imported)": _timings(lambda: Predictor.load(keras_only), 5, warmup=1),
        }
        fast = Predictor.load(bundled)  # what a runtime process uses
        assert fast.backend == "bundle"
        predictor = Predictor.load(keras_only)  # the Keras model, for the TensorFlow rows
        model = predictor.model
        x_test, _ = dataset.windows("test")
        rng = np.random.default_rng(0)
        rows = x_test[rng.integers(0, len(x_test), size=64)]
        windows = [predictor.vocab.decode(row) for row in rows]
        one = rows[:1]

        counter = iter(range(10**9))
        warnings.simplefilter("ignore", UserWarning)  # test windows may hold <unk>: top_k would warn
        results = {
            "numpy top_k (ours)": _timings(lambda: fast.top_k(windows[next(counter) % 64], 5), args.calls),
            "numpy forward only": _timings(lambda: fast.probabilities_batch(one), args.calls),
            "tf.function": _timings(
                lambda: predictor._tf_forward(one),  # noqa: SLF001 - times the TF fallback itself
                args.calls // 4,
            ),
            "model(x) direct": _timings(lambda: model(one, training=False), args.calls // 4),
            "model.predict": _timings(lambda: model.predict(one, verbose=0), args.predict_calls),
        }
        reference = model.predict(rows, verbose=0)
        max_diff = float(np.abs(fast.probabilities_batch(rows) - reference).max())

    p50 = {name: float(np.percentile(t, 50)) for name, t in results.items()}
    p99 = {name: float(np.percentile(t, 99)) for name, t in results.items()}
    speedup = p50["model.predict"] / p50["numpy top_k (ours)"]
    load_after = os.getloadavg()
    command = " ".join([".venv/bin/python -m bench predict", *(argv if argv is not None else sys.argv[1:])])
    lines = [
        "## predict (`python -m bench predict`)",
        "",
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — cold start and single-window latency",
        "",
        f"Machine: {_machine(tf)}, Python {platform.python_version()}, TensorFlow {tf.__version__}; "
        f"model: window {predictor.window}, vocab {len(predictor.vocab)}, LSTM "
        f"{settings.train.lstm_units}x{settings.train.lstm_layers}; `{command.strip()}`. 1-minute load "
        f"average {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end (shared cores: noisy).",
        "",
        "#### Cold start: process start -> first answer",
        "",
        "| process | model dir | p50 wall (s) | min | max | peak RSS (MB) | runs |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {what} | {where} | {np.median(t):.3f} | {min(t):.3f} | {max(t):.3f} "
            f"| {'n/a' if rss is None else f'{rss / 1024:.0f}'} | {len(t)} |"
            for (what, where), (t, rss) in cold.items()
        ),
        "",
        *(
            f"{what}: **{_ratio(cold, what):.0f}x** faster to a first answer with the bundle."
            for what in dict.fromkeys(what for what, _ in cold)
        ),
        "",
        f"CLI: `perfspec predict --model DIR --top 5 {' '.join(CLI_ACTIONS)}`; python -c: import "
        "`perfspec.learn.predict`, `Predictor.load(DIR)`, one `top_k`. Both answers are identical with "
        "and without the bundle (checked on the printed output). In-process load (TensorFlow already "
        "imported for the Keras row):",
        "",
        "| load | p50 (ms) | max (ms) | calls |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {name} | {np.median(t):.2f} | {t.max():.2f} | {len(t)} |" for name, t in loads.items()),
        "",
        "#### Per-call latency (model loaded; NumPy rows from the bundle)",
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
        write_section(args.results, "predict", text)
        print(f"\nwritten to {args.results}")


def _bundle_and_keras_dirs(run_dir: Path, tmp: Path) -> tuple[Path, Path]:
    """The run dir with its ``predictor.npz`` (written if missing) and a copy without it."""
    from perfspec.learn.predict import BUNDLE_NAME, Predictor, export_bundle

    keras_only = tmp / "keras-only"
    keras_only.mkdir()
    for name in ("model.keras", "vocab.json"):
        shutil.copyfile(run_dir / name, keras_only / name)
    bundled = run_dir
    if not (run_dir / BUNDLE_NAME).is_file():  # an older run dir: bundle a copy, leave it alone
        bundled = tmp / "bundled"
        shutil.copytree(keras_only, bundled)
        predictor = Predictor.load(keras_only)
        if export_bundle(predictor.model, predictor.vocab, bundled / BUNDLE_NAME) is None:
            raise SystemExit(f"{run_dir}: the NumPy path cannot run this model, so there is no bundle")
    return bundled, keras_only


def _run_fresh(command: list[str], out: Path, env: dict[str, str]) -> tuple[float, int | None]:
    """Wall seconds and peak RSS (KB, None without GNU time) of one fresh process; stdout to ``out``.

    Peak RSS through GNU ``time`` (its own small child), not ``os.wait4`` on our child: a child forked
    from this process (TensorFlow loaded) starts with our RSS and would report it as its peak.
    """
    time_bin = "/usr/bin/time" if Path("/usr/bin/time").is_file() else shutil.which("time")
    rss_file = out.with_suffix(".rss")
    wrapped = [time_bin, "-f", "%M", "-o", str(rss_file), *command] if time_bin else command
    with open(out, "wb") as stdout:
        began = time.perf_counter()
        done = subprocess.run(wrapped, stdout=stdout, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
        seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {done.returncode}")
    peak = int(rss_file.read_text().strip().splitlines()[-1]) if time_bin else None
    return seconds, peak


def _cold_starts(
    bundled: Path, keras_only: Path, tmp: Path, runs: int, runs_keras: int
) -> dict[tuple[str, str], tuple[list[float], int | None]]:
    """Process start -> first answer for the CLI and a bare ``python -c``, with and without the bundle."""
    cli = Path(sys.executable).with_name("perfspec")
    cli_command = [str(cli)] if cli.is_file() else [sys.executable, "-m", "perfspec"]
    env = {**os.environ, "PERFSPEC_PATHS__DATA_DIR": str(tmp / "data"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    snippet = (
        "import sys; from perfspec.learn.predict import Predictor; "
        "print(Predictor.load(sys.argv[1]).top_k(sys.argv[2:], 5))"
    )
    kinds = {
        "`perfspec predict` (CLI)": lambda d: [*cli_command, "predict", "--model", str(d), "--top", "5"],
        "`python -c` (library)": lambda d: [sys.executable, "-c", snippet, str(d)],
    }
    out: dict[tuple[str, str], tuple[list[float], int | None]] = {}
    for what, make in kinds.items():
        answers = []
        for where, directory, count in (
            ("bundle (predictor.npz)", bundled, runs),
            ("no bundle (Keras)", keras_only, runs_keras),
        ):
            command = [*make(directory), *CLI_ACTIONS]
            _run_fresh(command, tmp / "warmup.txt", env)  # page cache, .pyc files
            timed = [_run_fresh(command, tmp / "answer.txt", env) for _ in range(count)]
            peaks = [rss for _, rss in timed if rss is not None]
            out[(what, where)] = ([t for t, _ in timed], max(peaks) if peaks else None)
            answers.append((tmp / "answer.txt").read_text())
        if answers[0] != answers[1]:
            raise SystemExit(f"{what}: the bundle answers differently:\n{answers[0]}\n{answers[1]}")
    return out


def _ratio(cold: dict[tuple[str, str], tuple[list[float], int | None]], what: str) -> float:
    (with_bundle, _), (without, _) = (times for (w, _), times in cold.items() if w == what)
    return float(np.median(without) / np.median(with_bundle))


def _machine(tf: object) -> str:
    """e.g. ``x86_64 VM, 2 vCPUs, 24 GB RAM, no GPU``."""
    try:
        virtual = " hypervisor " in f" {Path('/proc/cpuinfo').read_text().replace(chr(10), ' ')} "
    except OSError:
        virtual = False
    # the kernel keeps part of the RAM for itself: 24 GiB of RAM show as ~23.5 GiB of MemTotal
    memory = math.ceil(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    gpus = len(tf.config.list_physical_devices("GPU"))  # type: ignore[attr-defined]
    return (
        f"{platform.machine()}{' VM' if virtual else ''}, {os.cpu_count()} {'v' if virtual else ''}CPUs, "
        f"{memory} GB RAM, {f'{gpus} GPU(s)' if gpus else 'no GPU'}"
    )


if __name__ == "__main__":
    main()
