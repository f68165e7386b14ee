"""The ordered steps of a campaign, computed from a spec without touching anything.

Why separate: ``--dry-run`` prints exactly what the runner will execute, and resuming a campaign
re-derives the same steps (same spec -> same plan). Release and namespace names are built from the
repetition and the chart's position in the spec, so the four seed charts that share a name (and any
chart repeated) can never collide; they are valid DNS-1123 labels within Helm's 53-character limit.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

from perfspec.collect.spec import CampaignSpec, ChartRef

HELM_RELEASE_MAX = 53
_UNSAFE = re.compile(r"[^a-z0-9-]+")


class Step(BaseModel):
    """One helm action; ``unit`` names the (repetition, chart) pair an install and its uninstall share."""

    model_config = ConfigDict(frozen=True)

    index: int
    repetition: int
    unit: str
    action: Literal["install", "uninstall"]
    chart: ChartRef
    release: str
    namespace: str
    timeout_seconds: int
    pause_after_seconds: float


def release_name(prefix: str, repetition: int, position: int, chart_name: str) -> str:
    """``<prefix>-<rep>-<pos>-<chart>``, shortened with a hash suffix when Helm's limit would be hit."""
    head = f"{prefix}-{repetition}-{position:02d}-"
    slug = _UNSAFE.sub("-", chart_name.lower()).strip("-") or "chart"
    name = head + slug
    if len(name) <= HELM_RELEASE_MAX:
        return name
    digest = hashlib.sha256(slug.encode()).hexdigest()[:5]
    room = HELM_RELEASE_MAX - len(head) - len(digest) - 1
    return f"{head}{slug[:room].rstrip('-')}-{digest}"


def plan_steps(spec: CampaignSpec) -> list[Step]:
    """Install/uninstall steps in execution order (``batch``: all installs then all uninstalls, per
    repetition, as in the paper; ``pairwise``: each install directly followed by its uninstall)."""
    rng = random.Random(spec.shuffle_seed) if spec.shuffle_seed is not None else None
    steps: list[Step] = []

    def add(action: Literal["install", "uninstall"], repetition: int, position: int, chart: ChartRef) -> None:
        name = release_name(spec.namespace_prefix, repetition, position, chart.name)
        install = action == "install"
        steps.append(
            Step(
                index=len(steps),
                repetition=repetition,
                unit=f"{repetition}:{position}",
                action=action,
                chart=chart,
                release=name,
                namespace=name,
                timeout_seconds=spec.install_timeout_seconds if install else spec.uninstall_timeout_seconds,
                pause_after_seconds=(
                    spec.pause_after_install_seconds if install else spec.pause_after_uninstall_seconds
                ),
            )
        )

    for repetition in range(1, spec.repetitions + 1):
        order = list(enumerate(spec.charts, start=1))
        if rng is not None:
            rng.shuffle(order)
        if spec.mode == "batch":
            for position, chart in order:
                add("install", repetition, position, chart)
            for position, chart in order:
                add("uninstall", repetition, position, chart)
        else:
            for position, chart in order:
                add("install", repetition, position, chart)
                add("uninstall", repetition, position, chart)
    return steps
