"""Fixed-bucket histograms and the Prometheus text exposition of the live predictor's numbers.

Why fixed buckets: a live service runs for weeks; exact samples of every lead time and latency would
grow without bound. Prometheus-style cumulative buckets take constant memory, are what ``GET /metrics``
exports (a scraper computes quantiles over any time range with ``histogram_quantile``), and give
quantiles here by the same linear interpolation. A replay keeps its exact samples too (bounded by its log).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: Prediction latency buckets (ms): the 1 ms budget sits in the middle.
LATENCY_BUCKETS_MS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100)
#: Lead time buckets (ms): negative means the action arrived before its prediction was out.
LEAD_BUCKETS_MS: tuple[float, ...] = (
    -60_000, -10_000, -1000, -100, -10, -1, 0, 0.1, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000,
    5000, 10_000, 60_000,
)  # fmt: skip
#: Wall-clock delay from an event's request time to its prediction's emission (ms): intake batching.
DELAY_BUCKETS_MS: tuple[float, ...] = (1, 5, 10, 50, 100, 500, 1000, 5000, 10_000, 30_000, 60_000, 300_000)


@dataclass
class Histogram:
    """Counts of observations ``<= bounds[i]`` (the last slot: above every bound), their sum and number."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if list(self.bounds) != sorted(self.bounds):
            raise ValueError("histogram bounds must increase")
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def quantile(self, q: float) -> float | None:
        """Prometheus' ``histogram_quantile``: linear within the bucket holding rank ``q * count``; in the
        open top bucket, the highest bound. None when empty."""
        if not self.count:
            return None
        rank = q * self.count
        seen = 0
        for index, number in enumerate(self.counts):
            if number and seen + number >= rank:
                if index == len(self.bounds):
                    return float(self.bounds[-1])
                upper = self.bounds[index]
                lower = self.bounds[index - 1] if index else min(0.0, upper)
                return lower + (upper - lower) * (rank - seen) / number
            seen += number
        return float(self.bounds[-1])

    def merge(self, other: Histogram) -> None:
        if other.bounds != self.bounds:
            raise ValueError("cannot merge histograms with different buckets")
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total
        self.count += other.count

    def to_state(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "total": self.total, "count": self.count}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a saved state (ignored when the buckets changed meanwhile)."""
        counts = [int(c) for c in state.get("counts", [])]
        if len(counts) == len(self.counts):
            self.counts = counts
            self.total = float(state.get("total", 0.0))
            self.count = int(state.get("count", 0))


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


class Exposition:
    """Builds a Prometheus text exposition (format 0.0.4): HELP and TYPE once per family."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._declared: set[str] = set()

    def _declare(self, name: str, kind: str, help_text: str) -> None:
        if name not in self._declared:
            self._declared.add(name)
            self._lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def counter(self, name: str, help_text: str, value: float, labels: dict[str, str] | None = None) -> None:
        self._declare(name, "counter", help_text)
        self._lines.append(f"{name}{_labels(labels or {})} {_number(value)}")

    def gauge(self, name: str, help_text: str, value: float, labels: dict[str, str] | None = None) -> None:
        self._declare(name, "gauge", help_text)
        self._lines.append(f"{name}{_labels(labels or {})} {_number(value)}")

    def histogram(self, name: str, help_text: str, histogram: Histogram, scale: float = 1.0) -> None:
        """``scale`` converts the stored unit (ms) to the exported one (seconds: 0.001)."""
        self._declare(name, "histogram", help_text)
        cumulative = 0
        bounds: Sequence[float] = [*histogram.bounds, math.inf]
        for bound, number in zip(bounds, histogram.counts, strict=True):
            cumulative += number
            le = "+Inf" if math.isinf(bound) else _number(round(bound * scale, 9))
            self._lines.append(f'{name}_bucket{{le="{le}"}} {cumulative}')
        self._lines.append(f"{name}_sum {_number(histogram.total * scale)}")
        self._lines.append(f"{name}_count {histogram.count}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def parse_exposition(text: str) -> dict[str, float]:
    """``{sample name with labels: value}`` of an exposition (tests and the benchmark read it back)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values
