"""TensorFlow is imported once, quietly, even when mapped training tasks ask for it from several threads
at once (`make run` failed with a module-lock deadlock before the import was serialised)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = """
import threading
from perfspec.runtime import import_tensorflow_quietly
errors = []
def train():
    try:
        import_tensorflow_quietly()
        import perfspec.learn.training  # what a train-model task imports next
    except BaseException as error:
        errors.append(repr(error))
threads = [threading.Thread(target=train) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("errors:", errors)
"""


@pytest.mark.slow
def test_four_threads_import_tensorflow_at_once_without_deadlock_or_noise() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "errors: []"
    assert "oneDNN" not in done.stderr and "absl::InitializeLog" not in done.stderr
