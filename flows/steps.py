"""Run one task as a named pipeline step: cached outputs are verified, failures name the step and the fix.

Why: a Prefect cache entry is only a record of paths; if someone deleted the files it names, restoring it
would hand later steps missing inputs, so the step is recomputed instead. And a user reading a failed
flow should see which step failed and what to do, not a traceback from deep inside a library.
"""

from __future__ import annotations

from typing import Any, TypeVar

from prefect import Task, get_run_logger

from perfspec.errors import EnvironmentProblem, InputError, PerfspecError
from tasks.policy import missing_outputs, with_policy

T = TypeVar("T")

# What to do when a step fails for a reason that carries no hint of its own.
FIXES: dict[str, str] = {
    "clean-audit-logs": "check that --source names Kubernetes audit logs (JSON lines or the PerfSPEC CSV); "
    "rejected lines are listed in clean/<name>/rejects.jsonl",
    "build-actions": "check the cleaned events (clean/<name>/events.parquet) and the actions settings",
    "build-dataset": "the actions file needs enough actions for the window and split settings",
    "train-model": "re-run the same command to resume from the last checkpoint; lower --epochs or "
    "PERFSPEC_TRAIN__BATCH_SIZE if memory ran out",
    "evaluate-model": "re-run: evaluation reads model.keras and the dataset, both kept on disk",
    "log-run": "check MLFLOW_TRACKING_URI points at a reachable MLflow server (or unset it for the local "
    "SQLite store)",
    "promote-model": "check the MLflow model registry is reachable (MLFLOW_TRACKING_URI)",
    "run-campaign": "check the cluster (KUBECONFIG), helm, and the campaign file; see the campaign manifest",
}


class StepFailed(PerfspecError):
    """A step failed for a reason that is neither bad input nor a known environment problem."""


def step_error(step: str, error: BaseException) -> PerfspecError:
    """The user-facing error for a failed step: same class as the cause when it is one of ours."""
    hint = getattr(error, "hint", None) or FIXES.get(step)
    message = f"step '{step}' failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
    if isinstance(error, InputError):
        return InputError(message, hint=hint)
    if isinstance(error, EnvironmentProblem | OSError | TimeoutError):
        return EnvironmentProblem(message, hint=hint)
    return StepFailed(message, hint=hint)


def run_step(task_: Task[..., T], **kwargs: Any) -> T:
    """Call ``task_`` in the current flow; recompute a cached result whose output files are gone."""
    step = task_.name
    task_ = with_policy(task_)  # time limit and retries as the settings say now
    state = task_(**kwargs, return_state=True)
    if state.is_completed() and state.name == "Cached":
        record = state.result()
        gone = missing_outputs(record.outputs()) if hasattr(record, "outputs") else []
        if not gone:
            return record
        get_run_logger().warning("cached %s outputs are missing (%s); recomputing", step, ", ".join(gone))
        state = task_.with_options(refresh_cache=True)(**kwargs, return_state=True)
    if state.is_failed() or state.is_crashed():
        try:
            state.result()
        except BaseException as error:
            raise step_error(step, error) from error
        raise StepFailed(f"step '{step}' ended {state.name}", hint=FIXES.get(step))
    return state.result()


def run_mapped(task_: Task[..., T], over: str, values: list[Any], **fixed: Any) -> list[T]:
    """``task_`` once per value of parameter ``over`` (concurrently, as the flow's task runner allows);
    a failure names the step and the fix like ``run_step``."""
    from prefect import unmapped

    if over in fixed:
        raise TypeError(f"run_mapped() got {over!r} both to map over and as a fixed argument")
    arguments: dict[str, Any] = {over: values, **{k: unmapped(v) for k, v in fixed.items()}}
    futures = with_policy(task_).map(**arguments)
    results = []
    for future in futures:
        try:
            results.append(future.result())
        except BaseException as error:
            raise step_error(task_.name, error) from error
    return results
