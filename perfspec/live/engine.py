"""The live prediction engine: one window per stream, a top-k prediction after every action, and
online metrics when the next action of that stream arrives.

Why it is built this way: PerfSPEC's runtime gains only if the prediction for the next request is out
before that request arrives. So every prediction is kept until its stream's next action, and scored
then: its rank (hit@1/3/5/10), the lead time (the action's arrival minus the moment the prediction was
out: the previous action's arrival plus the time predicting took), and the prediction latency itself.
``precomputed_at[k]`` is the share of actions that were in the top k *and* predicted before they
arrived: the requests whose verification the runtime would have had ready. An action outside the top
``top`` is *unexpected* (the DeepLog-style signal security reviewers want);
it is handed to ``on_unexpected`` with its window. Times are the log's (seconds since the epoch), so a
replay at any speed measures the lead the runtime would have had; latencies are measured here.
Windows hold vocabulary ids (``<unk>`` for unknown actions) and the action names they came from, so a
new model (``swap``) re-encodes them with its own vocabulary between two actions; a window of only
unknown actions makes no prediction. Lead times and latencies go into fixed-bucket histograms
(``metrics.Histogram``, bounded memory for a live service); ``samples=True`` (a replay, bounded by its
log) keeps every exact value as well. The engine is single-threaded by design: callers feed it in
arrival order.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perfspec.learn.predict import Predictor
from perfspec.learn.scoring import KS
from perfspec.live.metrics import LATENCY_BUCKETS_MS, LEAD_BUCKETS_MS, Histogram

#: The ranks scored for every prediction (hit@k, the offline top-k up to 10); the engine keeps
#: this many candidates.
HIT_KS = tuple(k for k in KS if k <= 10)
GLOBAL = "global"
#: Vocabularies up to this size are ranked with one stable sort (faster there than a partition).
SORT_BELOW = 1024


@dataclass
class Pending:
    """A prediction waiting for its stream's next action."""

    ranked: list[str]
    emitted_at: float  # log time (seconds) at which the prediction was out
    window: list[str]
    version: str
    probabilities: list[float] = field(default_factory=list)  # of ``ranked``, in order


@dataclass
class Scored:
    """What the engine learnt when an action arrived: the prediction it was checked against (if any)."""

    stream: str
    action: str
    at: float
    rank: int | None = None  # 0-based rank in the prediction; None: not among its candidates
    lead_ms: float | None = None
    predicted: Pending | None = None


@dataclass
class OnlineMetrics:
    """Counters and histograms of everything the engine scored; with ``samples``, every exact lead time
    and latency too (a replay: bounded by its log; a live service keeps histograms only)."""

    samples: bool = True
    actions: int = 0
    predictions: int = 0
    scored: int = 0
    unexpected: int = 0
    in_time: int = 0  # scored predictions that were out before their action arrived (lead > 0)
    hits: dict[int, int] = field(default_factory=lambda: dict.fromkeys(HIT_KS, 0))
    hits_in_time: dict[int, int] = field(default_factory=lambda: dict.fromkeys(HIT_KS, 0))
    lead_ms: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    lead_histogram: Histogram = field(default_factory=lambda: Histogram(LEAD_BUCKETS_MS))
    latency_histogram: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_MS))

    def observe_lead(self, lead_ms: float) -> None:
        self.lead_histogram.observe(lead_ms)
        if self.samples:
            self.lead_ms.append(lead_ms)

    def observe_latency(self, latency_ms: float) -> None:
        self.latency_histogram.observe(latency_ms)
        if self.samples:
            self.latency_ms.append(latency_ms)

    def hit_at(self) -> dict[str, float]:
        return {str(k): (self.hits[k] / self.scored if self.scored else 0.0) for k in HIT_KS}

    def summary(self) -> dict[str, Any]:
        def quantiles(
            values: list[float], histogram: Histogram, qs: tuple[int, ...]
        ) -> dict[str, float | None]:
            if not self.samples:  # estimated from the buckets, as Prometheus would
                found = [histogram.quantile(q / 100) for q in qs]
                return {f"p{q}": None if v is None else round(v, 4) for q, v in zip(qs, found, strict=True)}
            if not values:
                return {f"p{q}": None for q in qs}
            exact = np.percentile(np.asarray(values), qs)
            return {f"p{q}": round(float(v), 4) for q, v in zip(qs, exact, strict=True)}

        share = lambda n: n / self.scored if self.scored else 0.0  # noqa: E731 - a local formula
        return {
            "actions": self.actions,
            "predictions": self.predictions,
            "scored": self.scored,
            "hit_at": self.hit_at(),
            "in_time": share(self.in_time),
            "precomputed_at": {str(k): share(self.hits_in_time[k]) for k in HIT_KS},
            "lead_time_ms": quantiles(self.lead_ms, self.lead_histogram, (50, 90, 99)),
            "latency_ms": quantiles(self.latency_ms, self.latency_histogram, (50, 99)),
            "unexpected": self.unexpected,
        }


class _Stream:
    __slots__ = ("ids", "metrics", "names", "pending")

    def __init__(self, window: int, samples: bool, per_stream: bool) -> None:
        self.ids: deque[int] = deque([0] * window, maxlen=window)
        self.names: deque[str] = deque(maxlen=window)
        self.pending: Pending | None = None
        # goes with the stream when it is evicted
        self.metrics = OnlineMetrics(samples=samples) if per_stream else None

    def reencode(self, window: int, id_of: Callable[[str], int]) -> None:
        """The same window under another model: its last ``window`` names, ids of the new vocabulary."""
        self.names = deque(self.names, maxlen=window)
        self.ids = deque([0] * (window - len(self.names)) + [id_of(n) for n in self.names], maxlen=window)


class Engine:
    """Feed it actions in arrival order with ``observe``; read ``metrics`` (and per-stream ones)."""

    def __init__(
        self,
        predictor: Predictor,
        *,
        top: int = 5,
        version: str | None = None,
        max_streams: int = 10_000,
        on_unexpected: Callable[[Scored], None] | None = None,
        samples: bool = True,
        per_stream: bool = True,
    ) -> None:
        if not 1 <= top <= max(HIT_KS):
            raise ValueError(f"top must be between 1 and {max(HIT_KS)}")
        self.predictor = predictor
        self.version = version or predictor.source
        self.top = top
        self.window = predictor.window
        self.max_streams = max_streams
        self.on_unexpected = on_unexpected
        self.samples = samples
        self.per_stream = per_stream  # per-stream metrics too (a live service needs only the totals)
        self.metrics = OnlineMetrics(samples=samples)
        self._streams: OrderedDict[str, _Stream] = OrderedDict()  # least recently used first
        self._vocab = predictor.vocab
        self.evicted_streams = 0

    def _stream(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream(self.window, self.samples, self.per_stream)
            if len(self._streams) > self.max_streams:  # memory stays bounded with many actors
                self._streams.popitem(last=False)
                self.evicted_streams += 1
        else:
            self._streams.move_to_end(name)
        return stream

    def observe(self, action: str, at: float, stream_name: str = GLOBAL) -> Scored:
        """One action of ``stream_name`` arrived at ``at`` (log time, seconds): score the prediction
        made for it, then predict what comes next."""
        stream = self._stream(stream_name)
        scored = Scored(stream_name, action, at, predicted=stream.pending)
        metrics = [self.metrics] if stream.metrics is None else [self.metrics, stream.metrics]
        for m in metrics:
            m.actions += 1
        if stream.pending is not None:
            ranked = stream.pending.ranked
            scored.rank = ranked.index(action) if action in ranked else None
            scored.lead_ms = (at - stream.pending.emitted_at) * 1000.0
            in_time = scored.lead_ms > 0
            for m in metrics:
                m.scored += 1
                m.in_time += in_time
                m.observe_lead(scored.lead_ms)
                for k in HIT_KS:
                    hit = scored.rank is not None and scored.rank < k
                    m.hits[k] += hit
                    m.hits_in_time[k] += hit and in_time
            if scored.rank is None or scored.rank >= self.top:
                for m in metrics:
                    m.unexpected += 1
                if self.on_unexpected is not None:
                    self.on_unexpected(scored)
        stream.ids.append(self._vocab.id_of(action))
        stream.names.append(action)
        stream.pending = self._predict(stream, at, metrics)
        return scored

    def _predict(self, stream: _Stream, at: float, metrics: list[OnlineMetrics]) -> Pending | None:
        if not any(stream.ids):  # only <unk> (or padding): nothing to predict from
            return None
        began = time.perf_counter()
        probs = np.array(self.predictor.probabilities_batch(np.fromiter(stream.ids, np.int32)[None, :])[0])
        probs[0] = -np.inf  # <unk> is never a prediction
        count = min(max(HIT_KS), len(probs) - 1)
        negative = -probs
        if len(probs) <= SORT_BELOW:  # a small vocabulary: one stable sort beats partition + sort
            best = np.argsort(negative, kind="stable")[:count]
        else:  # ties broken by id, as the stable sort does
            best = np.argpartition(negative, count - 1)[:count]
            best = best[np.lexsort((best, negative[best]))]
        tokens = self._vocab.tokens
        ranked = [tokens[i] for i in best.tolist()]
        chances = probs[best].tolist()
        latency = time.perf_counter() - began
        for m in metrics:
            m.predictions += 1
            m.observe_latency(latency * 1000.0)
        return Pending(ranked, at + latency, list(stream.names), self.version, chances)

    def swap(self, predictor: Predictor, version: str | None = None) -> None:
        """Predict with ``predictor`` from the next action on. Windows are re-encoded from their action
        names (a name the new vocabulary lacks becomes ``<unk>``; a longer window is left-padded);
        predictions already out stay as they were made, and are scored against their own version."""
        self.predictor = predictor
        self.version = version or predictor.source
        self._vocab = predictor.vocab
        self.window = predictor.window
        for stream in self._streams.values():
            stream.reencode(self.window, self._vocab.id_of)

    def forget_streams(self) -> None:
        """Drop every window and pending prediction (a model whose streams are keyed otherwise)."""
        self._streams.clear()

    @property
    def by_stream(self) -> dict[str, OnlineMetrics]:
        """The metrics of each stream still held (an evicted stream's go with it)."""
        return {name: s.metrics for name, s in self._streams.items() if s.metrics is not None}

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    def latest(self, stream_name: str = GLOBAL) -> Pending | None:
        """The prediction now waiting for ``stream_name``'s next action."""
        stream = self._streams.get(stream_name)
        return stream.pending if stream is not None else None
