"""Task policy, for real under a Prefect test server: retries on transient failures only, timeouts,
content-hash caching, and recomputation when a cached output was deleted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from perfspec.errors import EnvironmentProblem, InputError
from perfspec.settings import DatasetSettings, Settings
from tests import prefect_harness

SAMPLE_ACTIONS = Path(__file__).resolve().parent.parent / "sample" / "events-dataset.txt"
FAST = Settings().with_section("prefect", task_retries=3, retry_delay_seconds=0.05, retry_jitter_factor=0.5)


@pytest.fixture(scope="module", autouse=True)
def harness(request: pytest.FixtureRequest) -> Path:
    return prefect_harness.start(request)


def _flow_state_and_runs(flow_fn):
    """Run ``flow_fn`` and return (final flow state, its task runs) read back from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    state = flow_fn(return_state=True)
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return state, runs


def test_a_transient_failure_is_retried_and_the_flow_succeeds(tmp_path: Path) -> None:
    from prefect import flow

    from tasks.policy import perfspec_task

    attempts = tmp_path / "attempts"

    @perfspec_task("flaky-io", timeout=30, transient=True, settings=FAST)
    def flaky() -> str:
        count = int(attempts.read_text()) + 1 if attempts.exists() else 1
        attempts.write_text(str(count))
        if count < 3:
            raise ConnectionError(f"server went away (attempt {count})")
        return "done"

    @flow
    def uses_flaky() -> str:
        return flaky()

    state, runs = _flow_state_and_runs(uses_flaky)
    assert state.is_completed()
    assert state.result() == "done"
    assert attempts.read_text() == "3"
    [run] = runs
    assert run.run_count == 3 and run.state.is_completed()


def test_bad_input_fails_once_with_a_clear_message(tmp_path: Path) -> None:
    """A real task (build-dataset) on a too-short actions file: no retry, the flow names step and fix."""
    from prefect import flow

    from flows.steps import run_step
    from tasks.data import build_dataset_task

    short = tmp_path / "actions.txt"
    short.write_text("create_pods\ndelete_pods\n")

    @flow
    def builds() -> None:
        run_step(
            build_dataset_task,
            actions_file=str(short),
            datasets_dir=str(tmp_path / "datasets"),
            settings=DatasetSettings(),
        )

    state, runs = _flow_state_and_runs(builds)
    assert state.is_failed()
    with pytest.raises(InputError) as caught:
        state.result()
    message = str(caught.value)
    assert "step 'build-dataset' failed: too few actions" in message
    assert "hint:" in message  # the library's fix travels with the error
    [run] = runs
    assert run.run_count == 1, "bad input must not be retried"


def test_retry_policy_classifies_errors() -> None:
    from tasks.policy import is_transient

    assert is_transient(ConnectionError("reset")) and is_transient(TimeoutError())
    assert is_transient(EnvironmentProblem("mlflow server down"))
    assert not is_transient(InputError("empty log")) and not is_transient(ValueError("bug"))


def test_a_task_that_overruns_its_timeout_fails() -> None:
    import time

    from prefect import flow

    from tasks.policy import perfspec_task

    @perfspec_task("slow", timeout=1, transient=False, settings=FAST)
    def slow() -> None:
        for _ in range(200):  # Python-level work: the timeout interrupts it between bytecodes
            time.sleep(0.1)

    @flow
    def runs_slow() -> None:
        slow()

    began = time.monotonic()
    state, _ = _flow_state_and_runs(runs_slow)
    assert state.is_failed() and "timed out" in str(state.message).lower()
    assert time.monotonic() - began < 12


def test_rerun_hits_the_cache_and_recomputes_deleted_outputs(tmp_path: Path) -> None:
    from prefect import flow

    from flows.steps import run_step
    from tasks.data import build_dataset_task

    actions = tmp_path / "actions.txt"
    actions.write_text("\n".join(SAMPLE_ACTIONS.read_text().splitlines()[:600]) + "\n")
    datasets = tmp_path / "datasets"

    @flow
    def builds(window: int = 5):
        record = run_step(
            build_dataset_task,
            actions_file=str(actions),
            datasets_dir=str(datasets),
            settings=DatasetSettings(window=window),
        )
        return record

    def names(runs) -> list[str]:
        return [r.state.name for r in sorted(runs, key=lambda r: r.created)]

    first, runs1 = _flow_state_and_runs(builds)
    record = first.result()
    assert names(runs1) == ["Completed"]
    npz = Path(record.dataset_dir) / "windows.npz"
    built_at = npz.stat().st_mtime_ns

    second, runs2 = _flow_state_and_runs(builds)
    assert names(runs2) == ["Cached"], "unchanged input must be served from the cache"
    assert second.result() == record and npz.stat().st_mtime_ns == built_at

    # the cache key follows the content, not the file name or its mtime
    os.utime(actions)
    with actions.open("a") as handle:
        handle.write("create_pods\n")
    third, runs3 = _flow_state_and_runs(builds)
    assert names(runs3) == ["Completed"] and third.result().fingerprint != record.fingerprint

    # a cached record whose files were deleted is recomputed, not handed on
    npz_new = Path(third.result().dataset_dir) / "windows.npz"
    npz_new.unlink()
    fourth, runs4 = _flow_state_and_runs(builds)
    assert names(runs4) == ["Cached", "Completed"]
    assert npz_new.exists() and fourth.result() == third.result()
