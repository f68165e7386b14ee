"""Files shipped with perfspec, found the same way in a checkout and in an installed wheel.

Why: the pipeline's default input (the attributed sample corpus) and the deployment definitions
(``deployments/prefect.yaml``) must be found by an installed ``perfspec`` run from any folder, not
only from the repository root. The wheel carries ``sample/`` as ``perfspec/_sample`` and the
``flows``/``tasks``/``deployments`` packages beside ``perfspec``; a checkout has them at its root.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from perfspec.errors import EnvironmentProblem

_PACKAGE_DIR = Path(__file__).resolve().parent


def sample_dir() -> Path:
    """The bundled sample folder (``sample/`` of a checkout, ``perfspec/_sample`` of a wheel)."""
    for candidate in (_PACKAGE_DIR / "_sample", _PACKAGE_DIR.parent / "sample"):
        if candidate.is_dir():
            return candidate
    raise EnvironmentProblem(
        "the bundled sample is missing from this installation",
        hint="reinstall perfspec, or pass your own audit logs",
    )


def sample_file(name: str) -> Path:
    """One file of the bundled sample (e.g. ``audit-logs.csv.gz``)."""
    return sample_dir() / name


def project_dir() -> Path:
    """The folder holding the ``flows`` package: where Prefect resolves ``flows/<file>.py:<flow>``
    entrypoints (the repository root, or site-packages for a wheel)."""
    spec = importlib.util.find_spec("flows")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentProblem(
            "the perfspec flows package is not installed", hint="reinstall perfspec (`pip install perfspec`)"
        )
    return Path(next(iter(spec.submodule_search_locations))).resolve().parent


def prefect_file() -> Path:
    """``deployments/prefect.yaml``: the deployments `perfspec deploy` registers."""
    path = project_dir() / "deployments" / "prefect.yaml"
    if not path.is_file():
        raise EnvironmentProblem(f"{path} is missing", hint="reinstall perfspec, or pass --prefect-file")
    return path
