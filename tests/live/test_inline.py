"""The engine step inline in ``submit`` (issue 10's latency target): an idle engine predicts in the
submitting thread, a busy one gets the actions queued; either way records come out in submission order,
a model swap lands exactly between two actions, the per-submit cap holds, and ``submit`` never waits
for another thread's prediction. Real threads, real files, a real MLflow registry for the swap."""

from __future__ import annotations

import bisect
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from perfspec.actions.presets import resolve
from perfspec.live.events import LiveAction
from perfspec.live.models import ModelWatcher, load_served
from perfspec.live.service import LiveService
from perfspec.settings import ActionsSettings, LiveSettings
from tests.live.conftest import Registry, events_of, ngram_bundle
from tests.synthetic import chain_actions

PAPER = resolve(ActionsSettings())
ENGINE_THREAD = "perfspec-live-engine"


class Traced(LiveService):
    """The real service, noting which thread predicted each action, in the order they were predicted."""

    def __init__(self, *args: Any, delay: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trace: list[tuple[str, str]] = []  # (audit id, thread name)
        self.step_delay = delay  # seconds per step: makes submitting threads meet a busy engine
        self.gate: threading.Event | None = None  # set: the next step waits for it

    def _observe(self, item: LiveAction) -> None:
        self.trace.append((str(item.audit_id), threading.current_thread().name))  # under the engine lock
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.wait(10)
        if self.step_delay:
            time.sleep(self.step_delay)
        super()._observe(item)


def _lines(events: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(e).encode() for e in events]


def _records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for f in sorted(folder.glob("predictions-*.jsonl")) for x in f.open()]


def _traced(tmp_path: Path, actions: list[str], **settings: Any) -> Traced:
    return Traced(
        load_served(str(ngram_bundle(tmp_path / "model", actions))),
        tmp_path / "live",
        LiveSettings(**settings),
        PAPER,
        log=lambda _line: None,
    )


def test_records_keep_submission_order_when_inline_and_queued_steps_interleave(tmp_path: Path) -> None:
    service = _traced(tmp_path, chain_actions(300), inline_actions=2).start()
    service.step_delay = 0.0002  # steps long enough for the threads to find the engine busy now and then
    calls: list[tuple[int, int, list[str]]] = []  # (began, ended, audit ids) of every submit call
    calls_lock = threading.Lock()

    def submitter(seed: int) -> None:
        rng = random.Random(seed)
        events = events_of(chain_actions(240, seed=seed), step_ms=1.0)
        at = 0
        while at < len(events):
            size = rng.choice((1, 1, 1, 3, 5))  # streamed events and small webhook batches
            chunk = events[at : at + size]
            at += size
            began = time.perf_counter_ns()
            service.submit_lines(_lines(chunk))
            ended = time.perf_counter_ns()
            with calls_lock:
                calls.append((began, ended, [e["auditID"] for e in chunk]))
            time.sleep(rng.random() * 0.0005)

    threads = [threading.Thread(target=submitter, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summary = service.stop()

    order = [audit_id for audit_id, _ in service.trace]
    assert len(order) == len(set(order)) == 960 and summary["actions"] == 960 and summary["overflow"] == 0
    where = {audit_id: i for i, audit_id in enumerate(order)}
    by_thread = {name for _, name in service.trace}
    assert ENGINE_THREAD in by_thread and len(by_thread) > 1  # both paths were taken
    # a call that returned before another began has every action predicted before that one's
    calls.sort(key=lambda c: c[1])
    ends = [c[1] for c in calls]
    latest = []  # latest[i]: the last position among the calls ending first, up to i
    for _, _, ids in calls:
        latest.append(max([where[i] for i in ids] + latest[-1:]))
    for began, _, ids in calls:
        before = bisect.bisect_left(ends, began)
        if before:
            assert latest[before - 1] < min(where[i] for i in ids)
    # the records went out in that same order
    assert [r["audit_id"] for r in _records(tmp_path / "live")] == order


def test_the_inline_cap_holds_and_the_rest_goes_to_the_engine_thread_in_order(tmp_path: Path) -> None:
    service = _traced(tmp_path, chain_actions(300), inline_actions=3).start()
    first = events_of(chain_actions(10, seed=1))
    service.submit_lines(_lines(first))  # an idle engine: 3 here, 7 queued behind them
    me = threading.current_thread().name
    assert [name for _, name in service.trace[:3]] == [me] * 3
    deadline = time.monotonic() + 10
    while len(service.trace) < 10 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert [name for _, name in service.trace[3:]] == [ENGINE_THREAD] * 7
    assert [i for i, _ in service.trace] == [e["auditID"] for e in first]
    service.stop()

    never = _traced(tmp_path / "zero", chain_actions(300), inline_actions=0).start()
    never.submit_lines(_lines(events_of(chain_actions(5))))
    never.stop()
    assert [name for _, name in never.trace] == [ENGINE_THREAD] * 5  # 0: the queue for every action


def test_submit_never_waits_for_a_prediction_under_way_in_another_thread(tmp_path: Path) -> None:
    service = _traced(tmp_path, chain_actions(300)).start()
    events = events_of(chain_actions(6))
    gate = service.gate = threading.Event()
    slow = threading.Thread(target=service.submit_lines, args=(_lines(events[:3]),), name="receiver-1")
    slow.start()
    deadline = time.monotonic() + 10
    while not service.trace and time.monotonic() < deadline:
        time.sleep(0.001)  # receiver-1 is now inside the engine, stuck on the gate
    began = time.perf_counter()
    service.submit_lines(_lines(events[3:]))  # the engine is busy: queued, not waited for
    held = time.perf_counter() - began
    assert held < 0.5 and service.queued == 3
    gate.set()
    slow.join()
    summary = service.stop()
    assert held < 0.5 and summary["predictions"] == 6
    assert [i for i, _ in service.trace] == [e["auditID"] for e in events]
    assert [name for _, name in service.trace] == ["receiver-1"] * 3 + [ENGINE_THREAD] * 3


def test_a_swap_lands_between_two_inline_steps(tmp_path: Path, registry: Registry) -> None:
    old_actions, new_actions = chain_actions(300, seed=1), ["scale_deploy"] * 3 + chain_actions(300, 2)
    registry.promote(registry.register(ngram_bundle(tmp_path / "m1", old_actions)))
    served = load_served("models:/perfspec@champion", tracking_uri=registry.uri)
    watcher = ModelWatcher("models:/perfspec@champion", served, 3600, tracking_uri=registry.uri)
    service = Traced(served, tmp_path / "live", LiveSettings(), PAPER, watcher=watcher, log=lambda _x: None)
    service.start()
    registry.promote(registry.register(ngram_bundle(tmp_path / "m2", new_actions)))
    loader = threading.Thread(target=watcher.check)  # what the watcher's poll does, now
    events = iter(events_of(chain_actions(20_000, seed=5), step_ms=1.0))
    loader.start()
    while loader.is_alive():  # one event a submit from this thread: an idle engine, every step inline
        service.submit_lines(_lines([next(events)]))
        time.sleep(0.001)
    for _ in range(20):
        service.submit_lines(_lines([next(events)]))
    summary = service.stop()

    assert {name for _, name in service.trace} == {threading.current_thread().name}  # all inline
    records = _records(tmp_path / "live")
    versions = [r["model_version"] for r in records]
    switch = versions.index("models:/perfspec/2")
    assert switch > 0 and set(versions[:switch]) == {"models:/perfspec/1"}
    assert set(versions[switch:]) == {"models:/perfspec/2"} and summary["swaps"] == 1
    # each record is what its version predicts from the window of the actions before it
    predictors = {  # the very bundles each version was registered from
        f"models:/perfspec/{n}": load_served(str(tmp_path / f"m{n}" / "predictor.npz")).predictor
        for n in (1, 2)
    }
    names = [r["last_action"] for r in records]
    assert len(records) == summary["actions"]  # one record an action: the names are the windows
    for at in (switch - 1, switch, switch + 1, len(records) - 1):
        predictor = predictors[versions[at]]
        window = names[max(0, at + 1 - predictor.window) : at + 1]
        expected = predictor.top_k(window, 5)  # ties may be ordered otherwise: compare the chances
        got = records[at]["predictions"]
        assert [p["probability"] for p in got] == pytest.approx([c for _, c in expected], abs=1e-6), at
        assert [p["action"] for p in got][:2] == [a for a, _ in expected][:2], at
