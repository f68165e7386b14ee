"""Where pass 1 of ``clean`` runs: here (sequential), or on a Dask cluster (a local one, or an existing
scheduler) through its ``concurrent.futures`` executor.

Why Dask's executor under one task rather than one Prefect task per file (``DaskTaskRunner``): a
request's stages can sit in two files (a rotated log), so files cannot be cleaned apart; pass 1 (parse,
accept, hash) is what parallelises, and the merge (pass 2) needs all of it. The outputs are the same
bytes either way (tested). Dask is an existing engine: nothing here schedules anything itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Executor

from perfspec.errors import EnvironmentProblem
from perfspec.settings import PrefectSettings


@contextlib.contextmanager
def clean_executor(settings: PrefectSettings) -> Iterator[Executor | None]:
    """None for ``task_runner: sequential``; else a Dask executor for the run's duration."""
    if settings.task_runner == "sequential":
        yield None
        return
    from distributed import Client, LocalCluster

    stack = contextlib.ExitStack()
    with stack:
        try:
            if settings.dask_address:
                client = stack.enter_context(Client(settings.dask_address, timeout="20s"))
            else:
                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=settings.dask_workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                    )
                )
                client = stack.enter_context(Client(cluster))
        except OSError as error:
            where = settings.dask_address or "a local cluster"
            raise EnvironmentProblem(
                f"cannot start or reach the Dask scheduler ({where}): {error}",
                hint="check PERFSPEC_PREFECT__DASK_ADDRESS, or use PERFSPEC_PREFECT__TASK_RUNNER=sequential",
            ) from error
        yield client.get_executor()
