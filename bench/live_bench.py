"""``python -m bench live``: the latency ``perfspec live`` adds per event, at a paced rate, against the same
loop without prediction (issue 10: p99 < 1 ms at 5,000 events/s on 2 cores).

The loop is the real one: ``perfspec.live.service.LiveService`` (the action rule at ``submit``, the
engine step inline in the submitting thread when the engine is idle, up to ``live.inline_actions`` per
submit (``--inline-actions``; 0: the queue + engine thread for every action), the rest queued for the
engine thread, records serialised and offered to a file output under a temporary folder). "Without
prediction" is the same service whose engine step keeps the window and emits a record with no
predictions (no model call, no scoring). A producer thread submits the bundled sample's audit log
(``sample/audit-logs.csv.gz``: every record, reads and stages included, cycled) at ``--rate`` events/s,
either one event per ``submit`` (a streamed intake: the latency that matters) or in webhook batches of
``--batch`` (the API server's webhook: an action waits for those before it in its batch).
Per event: submit -> record emitted (p50/p99/max); per action, the engine step alone (the work
prediction adds, without the waits for a core); per submit call: how long ingestion was held (the
hook's cost: the receiver waits only for this); and the process' CPU time per event (producer included).
The model: an n-gram (order 4, window 10) fitted on the sample, or ``--model`` (anything
``Predictor.load`` takes). The header gives the 1-minute load average before and after the runs: p99 on a
shared 2-core VM moves with it, so compare runs only at a similar load. Results go to stdout and to this
benchmark's section of ``bench/RESULTS.md``.

    python -m bench live                      # 5,000 events/s for 10 s each, batch 1 and 400
    python -m bench live --seconds 3 --no-write
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from collections import Counter, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.results import write_section

REPO = Path(__file__).resolve().parent.parent


def _rows(count: int) -> list[tuple[Any, ...]]:
    """``count`` audit event rows (what the receiver hands over): the bundled sample's log
    (``sample/audit-logs.csv.gz``, reads and every stage included, ~13 % of its records are actions),
    cycled; each cycle's audit IDs made unique (the stages of one request still share theirs)."""
    import gzip

    from perfspec.audit.readers import NotAnEvent, csv_row

    log = []
    with gzip.open(REPO / "sample" / "audit-logs.csv.gz", "rt") as handle:
        for line in handle:
            try:
                log.append(csv_row(line))
            except NotAnEvent:
                continue
    return [
        (f"{row[0]}-{i // len(log)}", *row[1:]) for i, row in ((i, log[i % len(log)]) for i in range(count))
    ]


def _predictor(model: str | None) -> Any:
    from perfspec.learn.families.ngram import NGram
    from perfspec.learn.predict import Predictor
    from perfspec.learn.vocab import Vocabulary

    if model:
        return Predictor.load(model)
    actions = (REPO / "sample" / "events-dataset.txt").read_text().split()
    vocab = Vocabulary.from_counts(Counter(actions))
    return Predictor(NGram.fit([vocab.encode(actions)], len(vocab), 10, order=4), vocab, "n-gram (sample)")


def _services() -> dict[str, type]:
    """The real service, and the same service without the model (window kept, record emitted)."""
    import orjson

    from perfspec.live.events import LiveAction, epoch_seconds
    from perfspec.live.service import LiveService

    class Timed(LiveService):
        done: dict[str, float]
        steps: list[float]

        def _observe(self, item: LiveAction) -> None:
            began = time.perf_counter()
            self._step(item)
            self.done[str(item.audit_id)] = now = time.perf_counter()
            self.steps.append(now - began)

        def _step(self, item: LiveAction) -> None:
            super()._observe(item)

    class NoPrediction(Timed):
        windows: dict[str, deque[str]]

        def _step(self, item: LiveAction) -> None:
            if self._recent.seen(item.audit_id):
                return
            at = epoch_seconds(item.received)
            stream = self._stream_of(item.username)
            window = self.windows.setdefault(stream, deque(maxlen=self.engine.window))
            window.append(item.action)
            record = {
                "stream": stream,
                "last_action": item.action,
                "audit_id": item.audit_id,
                "event_time": item.received,
                "at": at,
                "predictions": [],
                "model_version": self.served.version,
            }
            line = orjson.dumps(record) + b"\n"
            for output in self.outputs.values():
                output.put(line)

    return {"with prediction": Timed, "without prediction": NoPrediction}


def _run(
    kind: type, predictor: Any, rows: list[Any], rate: float, batch: int, inline: int | None = None
) -> dict[str, Any]:
    from perfspec.actions.presets import PAPER
    from perfspec.live.models import Served
    from perfspec.settings import LiveSettings

    with tempfile.TemporaryDirectory(prefix="perfspec-live-bench-") as folder:
        settings = LiveSettings() if inline is None else LiveSettings(inline_actions=inline)
        service = kind(Served(predictor, "bench"), Path(folder), settings, PAPER, log=lambda _x: None)
        service.done = {}
        service.steps = []
        service.windows = {}
        service.start()
        submitted: dict[str, float] = {}
        held: list[float] = []
        period = batch / rate
        began = time.perf_counter()
        cpu_before = time.process_time()
        for number, start in enumerate(range(0, len(rows), batch)):
            due = began + number * period
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            chunk = rows[start : start + batch]
            now = time.perf_counter()
            for row in chunk:
                if row[0] not in submitted and PAPER.action_of(row[4], row[9], row[10]) is not None:
                    submitted[row[0]] = now  # an action (its first stage): it gets a record
            service.submit(chunk)
            held.append(time.perf_counter() - now)
        elapsed = time.perf_counter() - began
        deadline, expected = time.monotonic() + 60, len(submitted)
        while len(service.done) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        cpu = time.process_time() - cpu_before
        service.stop()
    latencies = np.array([service.done[i] - submitted[i] for i in submitted if i in service.done]) * 1e3
    return {
        "events": len(rows),
        "actions": len(submitted),
        "recorded": len(service.done),
        "cpu_us_per_event": round(cpu / len(rows) * 1e6, 1),
        "rate": round(len(rows) / elapsed),
        "latency_ms": {q: round(float(np.percentile(latencies, p)), 3) for q, p in (("p50", 50), ("p99", 99))}
        | {"max": round(float(latencies.max()), 3)},
        "step_ms": {
            "p50": round(float(np.percentile(service.steps, 50)) * 1e3, 4),
            "p99": round(float(np.percentile(service.steps, 99)) * 1e3, 4),
        },
        "submit_ms": {
            "p50": round(float(np.percentile(held, 50)) * 1e3, 4),
            "p99": round(float(np.percentile(held, 99)) * 1e3, 4),
        },
        "overflow": service.counts["overflow"],
        "dropped": sum(service.dropped().values()),
    }


def _machine() -> str:
    memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {memory} GB RAM, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench live", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000.0, help="events per second submitted")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 400], help="events per submit call")
    parser.add_argument("--model", help="default: an n-gram fitted on the bundled sample")
    parser.add_argument(
        "--inline-actions", type=int, help="live.inline_actions (default: the setting's default)"
    )
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    predictor = _predictor(args.model)
    rows = _rows(int(args.rate * args.seconds))
    gc.freeze()  # as `perfspec live` does once loaded (here the harness' rows are frozen with it)
    results: dict[str, dict[str, Any]] = {}
    load_before = os.getloadavg()[0]
    for batch in args.batch:
        for name, kind in _services().items():
            result = _run(kind, predictor, rows, args.rate, batch, args.inline_actions)
            results[f"{name}, batch {batch}"] = result
            print(f"{name:20} batch {batch:4}: {json.dumps(result)}", flush=True)
    text = _report(args, predictor, results, (load_before, os.getloadavg()[0]))
    print(text)
    if not args.no_write:
        write_section(args.results, "live", text)


def _load_words(before: float, after: float) -> str:
    """The load average in words: a busy machine's p99 is not the code's."""
    busiest = max(before, after)
    if busiest < 1.0:
        return "under one runnable task on average: the machine was quiet"
    if busiest < 2.0:
        return "the 2 cores were partly used by other work"
    return "the 2 cores were busy with other work: p99 here says more about the machine than the code"


def _report(args: Any, predictor: Any, results: dict[str, dict[str, Any]], load: tuple[float, float]) -> str:
    from perfspec.settings import LiveSettings

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    inline = LiveSettings().inline_actions if args.inline_actions is None else args.inline_actions
    flag = "" if args.inline_actions is None else f" --inline-actions {args.inline_actions}"
    lines = [
        f"## live (`python -m bench live`) — {when}",
        "",
        f"Machine: {_machine()}; load average (1 min) {load[0]:.2f} before, {load[1]:.2f} after "
        f"({_load_words(*load)}). Command: `.venv/bin/python -m bench live --rate {args.rate:g} --seconds "
        f"{args.seconds:g} --batch {' '.join(map(str, args.batch))}{flag}` (inline_actions {inline}). "
        f"Model: {predictor.source} ({predictor.family}, window {predictor.window}, "
        f"{len(predictor.vocab)} actions). Latency: submit -> record emitted, per event.",
        "",
        "| loop | events/s | latency p50 | p99 | max | engine step p50 | p99 | submit() held p50 | p99 | "
        "CPU/event | overflow | dropped |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        lat, held, step = r["latency_ms"], r["submit_ms"], r["step_ms"]
        lines.append(
            f"| {name} | {r['rate']:,} | {lat['p50']} ms | {lat['p99']} ms | {lat['max']} ms | "
            f"{step['p50']} ms | {step['p99']} ms | "
            f"{held['p50']} ms | {held['p99']} ms | {r['cpu_us_per_event']} µs | {r['overflow']} | "
            f"{r['dropped']} |"
        )
    lines.append("")
    for batch in args.batch:
        with_model = results[f"with prediction, batch {batch}"]["latency_ms"]["p99"]
        without = results[f"without prediction, batch {batch}"]["latency_ms"]["p99"]
        lines.append(
            f"- batch {batch}: prediction adds {with_model - without:.3f} ms at p99 "
            f"({without} -> {with_model} ms)."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
