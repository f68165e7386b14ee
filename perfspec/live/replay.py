"""``perfspec replay``: a cleaned audit log through the live engine, at its recorded timing or as fast as
possible, and what the runtime would have gained.

Why: "how many requests would have found their verification precomputed, and with how much time to
spare" has an offline answer. The log's actions (the model's action rule, e.g. the paper preset) are
fed to ``engine.Engine`` in order; lead times are in the log's own clock, so ``--speed max`` gives the
same answer as real time, only faster. Outputs in ``out_dir``: ``replay.json`` (the contract below),
``unexpected.jsonl`` (each action outside the top-k, with its window), ``actions/`` (the actions the log
yields) and ``plots/`` (lead time, hit@k over the log, hit@k per actor).

``replay.json``: ``events, actions, predictions, scored, hit_at.{1,3,5,10}, in_time,
precomputed_at.{1,3,5,10}, lead_time_ms.{p50,p90,p99}, latency_ms.{p50,p99}, unexpected,
model_versions, model, streams`` (``global``, or ``actor``: a window per actor class), ``speed, top,
per_actor`` (the busiest actors: ``actions, scored, hit_at``),
``hit_at_last_tenth`` (the last 10 % of the log: comparable with a chronological hold-out when the model
was trained on the start of this same log; over the whole log, positions it trained on inflate hit@k),
``elapsed_seconds``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from perfspec.actions import build_actions
from perfspec.errors import InputError
from perfspec.fileio import atomic_open, write_json_atomic
from perfspec.learn.predict import Predictor
from perfspec.live.engine import GLOBAL, HIT_KS, Engine, Scored
from perfspec.live.models import version_of
from perfspec.settings import ActionsSettings

#: Actors listed in ``per_actor`` (the busiest, by actions).
TOP_ACTORS = 10


def parse_speed(text: str) -> float | None:
    """``max`` (None: no waiting) or a positive factor of the recorded pace (1 = real time)."""
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise InputError(
            f"--speed {text!r} is not 'max' or a positive number", hint="e.g. --speed 1, 10 or max"
        )
    return value


def _load_actions(events_parquet: Path, out_dir: Path, settings: ActionsSettings) -> tuple[int, Any]:
    """(events in the log, the actions table: action, timestamp, username) in log order."""
    if not Path(events_parquet).is_file():
        raise InputError(
            f"not found: {events_parquet}", hint="pass the events.parquet that `perfspec clean` wrote"
        )
    try:
        events = pq.ParquetFile(events_parquet).metadata.num_rows
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(
            f"{events_parquet} is not a readable Parquet file ({error})",
            hint="pass the events.parquet that `perfspec clean` wrote",
        ) from error
    summary = build_actions(Path(events_parquet), out_dir / "actions" / "actions.txt", settings)
    table = pq.read_table(
        out_dir / "actions" / "actions.parquet", columns=["action", "timestamp", "username"]
    )
    if summary.actions == 0:
        raise InputError(
            f"{events_parquet}: no actions after the {summary.preset} rule", hint="check the log"
        )
    if table.column("timestamp").null_count:
        raise InputError(f"{events_parquet}: actions without a time stamp cannot be replayed")
    return events, table


def replay(
    events_parquet: Path,
    model: str,
    out_dir: Path,
    *,
    speed: float | None = None,
    top: int = 5,
    actions_settings: ActionsSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Replay ``events_parquet`` through ``model`` (anything ``Predictor.load`` takes); write the
    outputs and return ``replay.json``'s content."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor = Predictor.load(model)  # first: a wrong model fails before the log is read
    events, table = _load_actions(Path(events_parquet), out_dir, actions_settings or ActionsSettings())
    actions = table.column("action").to_pylist()
    seconds = table.column("timestamp").cast("int64").to_numpy() / 1e6
    actors = table.column("username").to_pylist()
    ranks = np.full(len(actions), -2, np.int16)  # -2: not scored, -1: not among the candidates
    with atomic_open(out_dir / "unexpected.jsonl") as unexpected:

        def record(scored: Scored) -> None:
            assert scored.predicted is not None
            row = {
                "at": scored.at,
                "stream": scored.stream,
                "action": scored.action,
                "rank": None if scored.rank is None else scored.rank + 1,
                "window": scored.predicted.window,
                "predicted": scored.predicted.ranked[:top],
            }
            unexpected.write(orjson.dumps(row) + b"\n")

        engine = Engine(predictor, top=top, version=predictor.source, on_unexpected=record)
        actor_streams = predictor.streams == "actor"  # an actor-stream model: a window per actor class
        streams = [predictor.actor_class(a) for a in actors] if actor_streams else [GLOBAL] * len(actions)
        began = time.monotonic()
        for position, (action, at, stream) in enumerate(zip(actions, seconds, streams, strict=True)):
            if speed is not None:  # keep the recorded pace, scaled
                wait = (at - seconds[0]) / speed - (time.monotonic() - began)
                if wait > 0:
                    time.sleep(wait)
            scored = engine.observe(action, float(at), stream)
            if scored.predicted is not None:
                ranks[position] = -1 if scored.rank is None else scored.rank
            if progress is not None and position % 1000 == 0:
                progress(position, len(actions))
        elapsed = time.monotonic() - began
    report: dict[str, Any] = {
        "events": events,
        **engine.metrics.summary(),
        "model_versions": [version_of(model, engine.version)],
        "model": model,
        "streams": predictor.streams,
        "speed": "max" if speed is None else speed,
        "top": top,
        "per_actor": _per_actor(actors, ranks),
        "hit_at_last_tenth": _hit_at(ranks[int(len(ranks) * 0.9) :]),
        "elapsed_seconds": round(elapsed, 3),
    }
    _plots(out_dir / "plots", engine.metrics.lead_ms, ranks, report["per_actor"])
    write_json_atomic(out_dir / "replay.json", report)
    return report


#: Kept importable under its old name (the alias resolution now lives in ``live.models``).
_version_of = version_of


def _hit_at(ranks: np.ndarray) -> dict[str, float]:
    scored = ranks[ranks >= -1]
    return {
        str(k): round(float(((scored >= 0) & (scored < k)).mean()), 4) if len(scored) else 0.0 for k in HIT_KS
    }


def _per_actor(actors: list[str | None], ranks: np.ndarray) -> dict[str, dict[str, Any]]:
    """hit@k of the predictions, split by who made the predicted action (with an actor-stream model,
    each was made from that actor class's own window)."""
    names = np.array([a or "(none)" for a in actors], dtype=object)
    counts = Counter(names.tolist())
    busiest = sorted(counts, key=lambda n: (-counts[n], n))[:TOP_ACTORS]
    table: dict[str, dict[str, Any]] = {}
    for name in busiest:
        mine = ranks[names == name]
        scored = mine[mine >= -1]
        table[name] = {
            "actions": len(mine),
            "scored": len(scored),
            "hit_at": _hit_at(mine),
        }
    return table


def _plots(folder: Path, lead_ms: list[float], ranks: np.ndarray, per_actor: dict[str, Any]) -> list[Path]:
    """Lead-time distribution, hit@k along the log, hit@5 per actor."""
    from perfspec.learn.plots import _figure, _save

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    plt, fig = _figure(7, 4)
    axis = fig.add_subplot(1, 1, 1)
    positive = np.asarray([v for v in lead_ms if v > 0])
    if len(positive):
        axis.hist(
            positive, bins=np.logspace(np.log10(max(positive.min(), 1e-3)), np.log10(positive.max()), 50)
        )
        axis.set_xscale("log")
    axis.set_xlabel("lead time: next action's arrival − prediction out (ms, log scale)")
    axis.set_ylabel("predictions")
    axis.set_title(f"{len(positive):,} of {len(lead_ms):,} predictions were out before the action arrived")
    written.append(_save(plt, fig, folder / "lead_time.png"))
    plt, fig = _figure(7, 4)
    axis = fig.add_subplot(1, 1, 1)
    scored = ranks[ranks >= -1]
    span = max(len(scored) // 50, 1)
    for k in HIT_KS:
        hits = ((scored >= 0) & (scored < k)).astype(float)
        rolling = np.convolve(hits, np.ones(span) / span, mode="valid") if len(hits) >= span else hits
        axis.plot(rolling, label=f"hit@{k}")
    axis.axvline(len(scored) * 0.9, color="grey", linestyle=":", label="last tenth from here")
    axis.set_xlabel("scored action (log order)")
    axis.set_ylabel(f"hit rate (rolling over {span})")
    axis.set_ylim(0, 1)
    axis.legend()
    written.append(_save(plt, fig, folder / "hit_at_k.png"))
    plt, fig = _figure(7, 0.5 + 0.4 * max(len(per_actor), 1))
    axis = fig.add_subplot(1, 1, 1)
    names = list(per_actor)[::-1]
    axis.barh(names, [per_actor[n]["hit_at"]["5"] for n in names])
    axis.set_xlim(0, 1)
    axis.set_xlabel("hit@5 (global stream) by who made the action")
    written.append(_save(plt, fig, folder / "per_actor.png"))
    return written
