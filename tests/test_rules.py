"""Changing a cleaning rule changes the Prefect cache key of the cleaning step (and only of that step)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KEYS = """
import json, sys, types
from tasks.policy import content_cache_key
context = types.SimpleNamespace(task=types.SimpleNamespace(name="t"))
params = {"sources": [sys.argv[1]], "out_dir": "o"}
keys = {stage: content_cache_key(stage, "sources")(context, params) for stage in ("clean", "actions")}
print(json.dumps(keys))
"""


def _keys(root: Path, source: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", KEYS, str(source)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_changed_cleaning_constant_changes_the_clean_cache_key_only(tmp_path: Path) -> None:
    source = tmp_path / "audit.log"
    source.write_text("{}\n")
    copy = tmp_path / "copy"
    for package in ("perfspec", "tasks"):
        shutil.copytree(REPO / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = _keys(copy, source)
    assert before == _keys(copy, source)  # stable from run to run
    schema = copy / "perfspec" / "audit" / "schema.py"
    schema.write_text(schema.read_text().replace("MAX_AUDIT_ID_CHARS = 256", "MAX_AUDIT_ID_CHARS = 128"))
    after = _keys(copy, source)
    assert after["clean"] != before["clean"] and after["actions"] == before["actions"]
    source.write_text("{} \n")
    assert _keys(copy, source)["clean"] != after["clean"]  # and the input's content, as before


def test_task_limits_and_retries_follow_the_settings_when_the_task_runs() -> None:
    from perfspec.settings import Settings
    from tasks.data import build_dataset_task
    from tasks.learn import train_model
    from tasks.policy import with_policy

    slow = Settings().with_section(
        "prefect", task_timeout_seconds=123, train_timeout_seconds=456, task_retries=0
    )
    assert with_policy(build_dataset_task, slow).timeout_seconds == 123
    assert with_policy(train_model, slow).timeout_seconds == 456
    assert with_policy(build_dataset_task, slow).retries == 0
    retrying = slow.with_section("prefect", task_retries=4)
    assert with_policy(build_dataset_task, retrying).retries == 4  # transient: retried
    assert with_policy(train_model, retrying).retries == 0  # not transient: never retried
    assert (
        with_policy(with_policy(train_model, slow)).timeout_seconds
        == Settings().prefect.train_timeout_seconds
    )
