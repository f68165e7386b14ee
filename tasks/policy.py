"""How perfspec tasks retry, time out and cache: one place, so every task follows the same rules.

Why: a retry only helps when a failure can be transient (a file system hiccup, an MLflow or Prefect API
call, helm talking to a cluster). Bad input fails the same way every time, so it fails at once with its
message. Cache keys are built from input *content* hashes and the settings that shape the output, never
from DataFrames or object identity, so re-running on unchanged data reuses cleaning and dataset building.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from prefect import Task, task
from prefect.client.schemas.objects import TaskRun
from prefect.context import TaskRunContext
from prefect.states import State
from prefect.tasks import exponential_backoff

import perfspec
from perfspec.errors import InputError
from perfspec.fileio import sha256_file
from perfspec.rules import rules_version
from perfspec.settings import Settings, get_settings

# Exceptions a retry cannot fix: bad input and programming errors (pydantic's ValidationError is a
# ValueError). Everything else (OSError, TimeoutError, MLflow/HTTP errors, EnvironmentProblem) is retried.
NOT_TRANSIENT: tuple[type[BaseException], ...] = (
    InputError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    NotImplementedError,
    AssertionError,
)


def is_transient(error: BaseException) -> bool:
    return not isinstance(error, NOT_TRANSIENT)


def retry_if_transient(_task: Task[..., Any], _task_run: TaskRun, state: State[Any]) -> bool:
    """``retry_condition_fn``: retry unless the failure is bad input or a bug."""
    try:
        state.result()
    except BaseException as error:  # the task's own exception, re-raised by result()
        return is_transient(error)
    return True


#: A task's time limit: a number of seconds, or which ``settings.prefect`` limit applies (read at call time).
Limit = Literal["task", "train", "collect"] | float
_LIMIT_FIELDS = {
    "task": "task_timeout_seconds",
    "train": "train_timeout_seconds",
    "collect": "collect_timeout_seconds",
}
_POLICY = "perfspec_policy"  # the attribute of a perfspec task that remembers its policy


def _run_options(limit: Limit, transient: bool, settings: Settings) -> dict[str, Any]:
    """Prefect options for a time limit and a retry policy under ``settings``."""
    cfg = settings.prefect
    seconds = getattr(cfg, _LIMIT_FIELDS[limit]) if isinstance(limit, str) else float(limit)
    options: dict[str, Any] = {"timeout_seconds": seconds, "retries": 0}
    if transient and cfg.task_retries > 0:
        options |= {
            "retries": cfg.task_retries,
            "retry_delay_seconds": exponential_backoff(backoff_factor=cfg.retry_delay_seconds)
            if cfg.retry_delay_seconds > 0
            else 0,
            "retry_jitter_factor": cfg.retry_jitter_factor,
            "retry_condition_fn": retry_if_transient,
        }
    return options


def perfspec_task(
    name: str,
    *,
    timeout: Limit,
    transient: bool,
    cache_key_fn: Callable[[TaskRunContext, dict[str, Any]], str | None] | None = None,
    settings: Settings | None = None,
) -> Callable[[Callable[..., Any]], Task[..., Any]]:
    """The ``@task`` decorator with perfspec's policy: a time limit, and backoff + jitter retries only if
    ``transient``. Named limits and retries are re-read from the settings each time the task runs
    through ``with_policy`` (``flows.steps`` does), so changing them needs no re-import."""
    options: dict[str, Any] = {"name": name, "log_prints": True}
    options |= _run_options(timeout, transient, settings or get_settings())
    if cache_key_fn is not None:
        options |= {"cache_key_fn": cache_key_fn, "persist_result": True}
    else:
        options |= {"cache_policy": None, "persist_result": False}

    def decorate(fn: Callable[..., Any]) -> Task[..., Any]:
        made = task(**options)(fn)
        setattr(made, _POLICY, (timeout, transient))
        return made

    return decorate


def with_policy(task_: Task[..., Any], settings: Settings | None = None) -> Task[..., Any]:
    """``task_`` with its time limit and retries taken from the current settings (a non-perfspec task
    is returned as it is)."""
    policy = getattr(task_, _POLICY, None)
    if policy is None:
        return task_
    limit, transient = policy
    configured = task_.with_options(**_run_options(limit, transient, settings or get_settings()))
    setattr(configured, _POLICY, policy)
    return configured


def _canonical(value: Any) -> Any:
    """JSON-able, order-stable form of task parameters (paths as strings, models as dicts)."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def content_cache_key(
    stage: str, *file_params: str
) -> Callable[[TaskRunContext, dict[str, Any]], str | None]:
    """A cache key fn: task name + package version + the version of ``stage``'s rules
    (``perfspec.rules``) + every parameter, with the files named by ``file_params`` (a path or a list
    of paths) replaced by their sha256. A missing input gives no key (the task runs and reports it)."""

    def key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        material: dict[str, Any] = {
            "task": context.task.name,
            "perfspec": perfspec.__version__,
            "rules": rules_version(stage),
        }
        for name, value in sorted(parameters.items()):
            if name in file_params:
                paths = [value] if isinstance(value, str | Path) else list(value)
                try:
                    material[name] = [sha256_file(Path(p)) for p in paths]
                except OSError:
                    return None
            else:
                material[name] = _canonical(value)
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    return key


def missing_outputs(paths: Iterable[str | Path]) -> list[str]:
    """Outputs of a cached result that no longer exist (the cache must then be refreshed)."""
    return [str(p) for p in paths if not Path(p).exists()]
