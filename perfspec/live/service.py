"""The live predictor: audit events in (webhook hook or followed files), a top-k record per action out.

Why this shape:
- The engine step runs inline when the engine is idle: ``submit`` (called by the receiver after its
  durable write, or by a follower) applies the action rule, then, if nothing is queued and no other
  thread is inside the engine (its lock taken without waiting), predicts up to ``inline_actions`` of
  its actions in the calling thread, and queues the rest. Otherwise everything goes to a bounded
  queue that one engine thread drains. Why: on 2 cores, handing each action to another thread cost
  ~1 ms at p99 in waits for the interpreter lock, 5-20x the step itself; inline there is no hand-off.
  Order is kept: an action is queued whenever anything before it is queued or being predicted, and
  the engine thread takes the queue under the same engine lock. Ingestion never waits on prediction
  beyond the cap: a busy engine means "queue it". Past ``queue_events`` waiting actions, new ones
  skip prediction (counted as ``overflow``); the events were persisted before ``submit`` was called.
- Records are serialised once and offered to every output's drop-oldest buffer (``output.Output``):
  a slow consumer loses its oldest records (counted), never an event, and never slows the engine.
- Streams: one global window, or one per actor class (``predictor.actor_class(username)``) for an
  actor-stream model. A new model (``models.ModelWatcher``) is swapped in between two actions; each
  record names the version that produced it.
- Numbers: the engine's counters and fixed-bucket histograms (bounded), exported at ``/metrics``; the
  cumulative counters are saved every ``checkpoint_seconds`` and at exit (``state.json``), so after a
  restart (even a kill -9) they continue from the last save instead of starting at zero.
- Lead times are in the log's clock, as in ``perfspec replay`` (comparable numbers, whatever the
  transport); the wall-clock delay from a request to its record (intake batching) is its own histogram.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
import urllib.parse
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from perfspec.actions.presets import ActionRule
from perfspec.audit.readers import Row
from perfspec.fileio import write_json_atomic
from perfspec.live.engine import GLOBAL, HIT_KS, Engine, OnlineMetrics, Scored
from perfspec.live.events import LiveAction, RecentIds, actions_of, epoch_seconds, rows_of_lines
from perfspec.live.metrics import DELAY_BUCKETS_MS, Exposition, Histogram
from perfspec.live.models import ModelWatcher, Served
from perfspec.live.output import Output, RotatingFiles, StdoutLines
from perfspec.settings import LiveSettings

STATE_NAME = "state.json"
SUMMARY_NAME = "summary.json"
JSON = "application/json"
#: (status, content type, body) of an HTTP answer.
Answer = tuple[int, str, bytes]
_COUNTERS = ("events", "overflow", "unparsable", "duplicate_stages", "no_time", "swaps", "load_failures")


def _iso(seconds: float) -> str:
    return (
        dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


class LiveService:
    """``start()``, feed with ``submit(rows)`` / ``submit_lines(lines)``, read ``route(path)``, ``stop()``."""

    def __init__(
        self,
        served: Served,
        out_dir: Path,
        settings: LiveSettings,
        rule: ActionRule,
        *,
        emit: Sequence[str] = ("file",),
        watcher: ModelWatcher | None = None,
        log: Callable[[str], None] = print,
        top: int | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.settings = settings
        self.rule = rule
        self.top = top or settings.top
        self.watcher = watcher
        self.log = log
        self.served = served
        self.engine = Engine(
            served.predictor,
            top=self.top,
            version=served.version,
            max_streams=settings.max_streams,
            on_unexpected=self._unexpected,
            samples=False,
            per_stream=False,
        )
        self.counts: Counter[str] = Counter(dict.fromkeys(_COUNTERS, 0))
        self.by_version: Counter[str] = Counter()
        self.delay = Histogram(DELAY_BUCKETS_MS)
        self.restarts = 0
        self.started_at = time.time()
        self._recent = RecentIds(settings.remember_ids)
        self._latest: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._latest_lock = threading.Lock()
        self._queue: deque[list[LiveAction]] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        #: held by whoever is inside the engine (the engine thread or an inline ``submit``): one at a time
        self._engine_lock = threading.Lock()
        self._stopping = False
        self._started = False
        self._thread: threading.Thread | None = None
        self._last_checkpoint = time.monotonic()
        self._dropped_before: dict[str, int] = {}
        self._restore()
        self.outputs: dict[str, Output] = {}
        capacity, files = settings.output_buffer, (settings.rotate_bytes, settings.keep_files)
        if "file" in emit:
            self.outputs["file"] = Output(
                "file", RotatingFiles(self.out_dir, "predictions", *files), capacity, log
            )
        if "stdout" in emit:
            self.outputs["stdout"] = Output("stdout", StdoutLines(), capacity, log)
        self.unexpected_output = Output(
            "unexpected", RotatingFiles(self.out_dir, "unexpected", *files), capacity, log
        )

    # -- ingestion (any thread; never waits on prediction beyond ``inline_actions`` steps) ------------
    def submit(self, rows: Sequence[Row]) -> None:
        """Rows the intake has just stored durably: their first ``inline_actions`` actions are predicted
        here when the engine is idle, the others (or all, when it is busy) go to the engine thread."""
        found, count = actions_of(rows, self.rule)
        inline: list[LiveAction] = []
        with self._cond:
            self.counts["events"] += count
            if not found:
                return
            if self._stopping:
                self.counts["overflow"] += len(found)
                return
            cap = self.settings.inline_actions
            if cap and self._started and not self._queue and self._engine_lock.acquire(blocking=False):
                inline, found = found[:cap], found[cap:]  # the lock is ours: released below
            if found:
                if self._queued + len(found) > self.settings.queue_events:
                    self.counts["overflow"] += len(found)
                else:
                    self._queue.append(found)
                    self._queued += len(found)
                    if not inline:  # else woken below: it would only wait for our engine lock
                        self._cond.notify()
        if inline:
            try:
                self._predict(inline)
            finally:
                self._engine_lock.release()
                if found:
                    with self._cond:
                        self._cond.notify()

    def submit_lines(self, lines: Sequence[bytes]) -> str:
        """JSON lines of audit events (a followed file); returns "" (the follower's sink interface)."""
        rows, bad = rows_of_lines(lines)
        if bad:
            with self._cond:
                self.counts["unparsable"] += bad
        self.submit(rows)
        return ""

    write_batch = submit_lines  # what LogTailer calls on its sink

    @property
    def queued(self) -> int:
        return self._queued

    # -- the engine thread ---------------------------------------------------------------------------
    def start(self) -> LiveService:
        self._thread = threading.Thread(target=self._run, name="perfspec-live-engine", daemon=True)
        self._thread.start()
        if self.watcher is not None:
            self.watcher.start()
        with self._cond:
            self._started = True  # from now on the engine thread drains what inline steps leave queued
        return self

    def _predict(self, actions: Sequence[LiveAction]) -> None:
        """The engine step for each action, in order; a new model is taken between two actions.
        Only whoever holds ``_engine_lock`` calls it."""
        for action in actions:
            self._take_model()
            self._observe(action)

    def _run(self) -> None:
        """Drain the backlog (actions queued while the engine was busy), in submission order."""
        while True:
            with self._cond:
                if not self._queue and not self._stopping:
                    self._cond.wait(1.0)  # at most 1 s: checkpoints go on while idle
                work = bool(self._queue) or self._stopping
            stopping = False
            if work:
                with self._engine_lock:  # an inline step under way finishes first: it was submitted earlier
                    with self._cond:
                        batches = list(self._queue)
                        self._queue.clear()
                        stopping = self._stopping and not batches
                    for batch in batches:
                        self._predict(batch)
                        with self._cond:
                            self._queued -= len(batch)
            if time.monotonic() - self._last_checkpoint >= self.settings.checkpoint_seconds:
                self.checkpoint()
            if stopping:
                return

    def _take_model(self) -> None:
        if self.watcher is None:
            return
        new = self.watcher.take()
        if new is None:
            return
        if new.predictor.streams != self.served.predictor.streams:
            self.engine.forget_streams()  # streams keyed otherwise: no window carries over
        self.engine.swap(new.predictor, new.version)
        self.served = new
        self.counts["swaps"] += 1

    def _stream_of(self, username: str | None) -> str:
        predictor = self.served.predictor
        return predictor.actor_class(username) if predictor.streams == "actor" else GLOBAL

    def _observe(self, item: LiveAction) -> None:
        if self._recent.seen(item.audit_id):
            self.counts["duplicate_stages"] += 1
            return
        at = epoch_seconds(item.received)
        if at is None:
            self.counts["no_time"] += 1
            return
        stream = self._stream_of(item.username)
        self.engine.observe(item.action, at, stream)
        pending = self.engine.latest(stream)
        if pending is None:  # a window of unknown actions only: nothing to say
            return
        now = time.time()
        self.by_version[pending.version] += 1
        self.delay.observe((now - at) * 1000.0)
        record = {
            "stream": stream,
            "last_action": item.action,
            "audit_id": item.audit_id,
            "event_time": item.received,
            "predictions": [
                {"action": a, "probability": round(p, 6)}
                for a, p in zip(pending.ranked[: self.top], pending.probabilities, strict=False)
            ],
            "model_version": pending.version,
            "timestamp": _iso(now),
        }
        line = orjson.dumps(record) + b"\n"
        for output in self.outputs.values():
            output.put(line)
        with self._latest_lock:
            self._latest[stream] = record
            self._latest.move_to_end(stream)
            if len(self._latest) > self.settings.max_streams:
                self._latest.popitem(last=False)

    def _unexpected(self, scored: Scored) -> None:
        assert scored.predicted is not None
        row = {
            "at": _iso(scored.at),
            "stream": scored.stream,
            "action": scored.action,
            "rank": None if scored.rank is None else scored.rank + 1,
            "window": scored.predicted.window,
            "predicted": scored.predicted.ranked[: self.top],
            "model_version": scored.predicted.version,
        }
        self.unexpected_output.put(orjson.dumps(row) + b"\n")

    # -- state that outlives the process -------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        m = self.engine.metrics
        return {
            "counts": dict(self.counts),
            "by_version": dict(self.by_version),
            "restarts": self.restarts,
            "engine": {
                "actions": m.actions,
                "predictions": m.predictions,
                "scored": m.scored,
                "unexpected": m.unexpected,
                "in_time": m.in_time,
                "hits": {str(k): v for k, v in m.hits.items()},
                "hits_in_time": {str(k): v for k, v in m.hits_in_time.items()},
                "lead": m.lead_histogram.to_state(),
                "latency": m.latency_histogram.to_state(),
            },
            "delay": self.delay.to_state(),
            "dropped": {name: o.dropped for name, o in self._all_outputs().items()},
            "saved_at": _iso(time.time()),
        }

    def _restore(self) -> None:
        """Continue the counters of an earlier run in the same folder (``state.json``)."""
        path = self.out_dir / STATE_NAME
        try:
            state = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return
        self.restarts = int(state.get("restarts", 0)) + 1
        self.counts.update({k: int(v) for k, v in state.get("counts", {}).items() if k in _COUNTERS})
        self.by_version.update({k: int(v) for k, v in state.get("by_version", {}).items()})
        engine, m = state.get("engine", {}), self.engine.metrics
        for name in ("actions", "predictions", "scored", "unexpected", "in_time"):
            setattr(m, name, int(engine.get(name, 0)))
        for k in HIT_KS:
            m.hits[k] = int(engine.get("hits", {}).get(str(k), 0))
            m.hits_in_time[k] = int(engine.get("hits_in_time", {}).get(str(k), 0))
        m.lead_histogram.restore(engine.get("lead", {}))
        m.latency_histogram.restore(engine.get("latency", {}))
        self.delay.restore(state.get("delay", {}))
        self._dropped_before = {k: int(v) for k, v in state.get("dropped", {}).items()}

    def _all_outputs(self) -> dict[str, Output]:
        return {**self.outputs, "unexpected": self.unexpected_output}

    def dropped(self) -> dict[str, int]:
        """Records dropped per output, over every run of this folder."""
        return {n: o.dropped + self._dropped_before.get(n, 0) for n, o in self._all_outputs().items()}

    def checkpoint(self, wait: float = 10.0) -> None:
        """Save the counters; read under the engine lock (an inline step may be running), written after."""
        self._last_checkpoint = time.monotonic()
        held = self._engine_lock.acquire(timeout=wait)  # not got: an engine stuck past ``wait``; save anyway
        try:
            state = self._state()
        finally:
            if held:
                self._engine_lock.release()
        with contextlib.suppress(OSError):
            write_json_atomic(self.out_dir / STATE_NAME, state)

    # -- reading -------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        metrics: OnlineMetrics = self.engine.metrics
        return {
            **metrics.summary(),
            "events": self.counts["events"],
            "overflow": self.counts["overflow"],
            "duplicate_stages": self.counts["duplicate_stages"],
            "unparsable": self.counts["unparsable"] + self.counts["no_time"],
            "model_version": self.served.version,
            "model_versions": sorted(dict(self.by_version)),
            "predictions_by_version": dict(self.by_version),
            "swaps": self.counts["swaps"],
            "load_failures": self.watcher.failures if self.watcher else 0,
            "dropped": self.dropped(),
            "streams": self.engine.stream_count,
            "evicted_streams": self.engine.evicted_streams,
            "restarts": self.restarts,
            "top": self.top,
        }

    def route(self, path: str) -> Answer | None:
        """GET ``/predictions``, ``/predictions/<actor>``, ``/metrics``; None for any other path."""
        path = path.split("?", 1)[0]
        if path == "/metrics":
            return 200, Exposition.CONTENT_TYPE, self.metrics_text().encode()
        if path in ("/predictions", "/predictions/"):
            with self._latest_lock:
                streams = dict(self._latest)
            return 200, JSON, orjson.dumps({"model_version": self.served.version, "streams": streams})
        if path.startswith("/predictions/"):
            return self._latest_of(urllib.parse.unquote(path.removeprefix("/predictions/")))
        return None

    def _latest_of(self, name: str) -> Answer:
        predictor = self.served.predictor
        with self._latest_lock:
            record = self._latest.get(name)
            if record is None and predictor.streams == "actor":
                record = self._latest.get(predictor.actor_class(name))  # a username of a grouped class
        if record is not None:
            return 200, JSON, orjson.dumps(record)
        hint = (
            "a username or actor class that has made an action since the start"
            if predictor.streams == "actor"
            else f"this model predicts one stream: GET /predictions/{GLOBAL}"
        )
        return 404, JSON, orjson.dumps({"error": f"no prediction for {name!r}", "hint": hint})

    def metrics_text(self) -> str:
        m, counts, out = self.engine.metrics, self.counts, Exposition()
        out.counter("perfspec_live_events_total", "Audit events handed to the predictor.", counts["events"])
        out.counter(
            "perfspec_live_actions_total", "Actions (events the action rule keeps) observed.", m.actions
        )
        out.counter(
            "perfspec_live_duplicate_stages_total",
            "Later stages of a request already counted.",
            counts["duplicate_stages"],
        )
        out.counter(
            "perfspec_live_overflow_total",
            "Actions not predicted because the engine queue was full (events are persisted all the same).",
            counts["overflow"],
        )
        out.counter(
            "perfspec_live_unparsable_total",
            "Lines that are no audit event or actions without a request time.",
            counts["unparsable"] + counts["no_time"],
        )
        for version, number in sorted(dict(self.by_version).items()):  # a copy: the engine thread adds
            out.counter(
                "perfspec_live_predictions_total",
                "Prediction records emitted, by the model version that made them.",
                number,
                {"version": version},
            )
        out.counter(
            "perfspec_live_scored_total", "Predictions scored when their next action arrived.", m.scored
        )
        for k in HIT_KS:
            out.counter(
                "perfspec_live_hits_total", "Scored actions within the top k.", m.hits[k], {"k": str(k)}
            )
        for k in HIT_KS:
            out.counter(
                "perfspec_live_hits_in_time_total",
                "Scored actions within the top k whose prediction was out before they arrived.",
                m.hits_in_time[k],
                {"k": str(k)},
            )
        out.counter("perfspec_live_in_time_total", "Scored predictions out before their action.", m.in_time)
        out.counter("perfspec_live_unexpected_total", f"Actions outside the top {self.top}.", m.unexpected)
        out.histogram(
            "perfspec_live_lead_time_seconds",
            "Next action's request time minus the prediction's emission (log clock).",
            m.lead_histogram,
            0.001,
        )
        out.histogram(
            "perfspec_live_prediction_latency_seconds",
            "Time the model took for one prediction.",
            m.latency_histogram,
            0.001,
        )
        out.histogram(
            "perfspec_live_delivery_delay_seconds",
            "Wall clock at the record's emission minus the action's request time (intake batching).",
            self.delay,
            0.001,
        )
        for name, number in self.dropped().items():
            out.counter(
                "perfspec_live_output_dropped_total",
                "Records dropped by a slow output (the oldest first).",
                number,
                {"output": name},
            )
        out.gauge("perfspec_live_queue_actions", "Actions waiting for the engine thread.", self._queued)
        out.gauge("perfspec_live_streams", "Streams (actor windows) held.", self.engine.stream_count)
        out.counter(
            "perfspec_live_evicted_streams_total", "Idle streams evicted (LRU).", self.engine.evicted_streams
        )
        out.counter("perfspec_live_model_swaps_total", "Models swapped in while serving.", counts["swaps"])
        out.counter(
            "perfspec_live_model_load_failures_total",
            "Polls whose new model failed to load (the old one kept serving).",
            self.watcher.failures if self.watcher else 0,
        )
        out.gauge(
            "perfspec_live_model_info", "The model version serving now.", 1, {"version": self.served.version}
        )
        out.counter(
            "perfspec_live_restarts_total", "Starts that continued an earlier run's counters.", self.restarts
        )
        return out.text()

    # -- stopping ------------------------------------------------------------------------------------
    def stop(self, timeout: float = 60.0) -> dict[str, Any]:
        """Predict what is queued, flush every output, save the counters and ``summary.json``."""
        if self.watcher is not None:
            self.watcher.stop()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._engine_lock.acquire(timeout=timeout):  # an inline step still under way ends first
            self._engine_lock.release()
        for output in self._all_outputs().values():
            output.close()
        self.checkpoint()
        summary = self.summary()
        with contextlib.suppress(OSError):
            write_json_atomic(self.out_dir / SUMMARY_NAME, summary)
        return summary
