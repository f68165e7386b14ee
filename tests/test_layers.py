"""The layering of ARCHITECTURE.md, enforced; and an installed wheel that works outside the checkout."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: (files, imported top-level names they must never import, at any depth of the code)
RULES: list[tuple[str, frozenset[str]]] = [
    ("perfspec", frozenset({"prefect", "tasks", "flows", "deployments"})),  # the library
    ("tasks", frozenset({"flows", "deployments"})),
    ("flows", frozenset({"deployments"})),
]
#: The CLI is the top layer: it may import flows and deployments (lazily, inside commands).
TOP_LAYER = ("perfspec/cli.py", "perfspec/commands/")
#: TensorFlow/Keras at module level only where networks are built and trained (serving is NumPy).
TENSORFLOW_MODULES = ("perfspec/learn/network.py", "perfspec/learn/training.py")


def imports(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line, imported top-level package, at module level) of every absolute import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0], id(node) in top_level
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0], id(node) in top_level


def python_files(folder: str) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)


def test_imports_only_point_downwards() -> None:
    broken = []
    for folder, forbidden in RULES:
        for path in python_files(folder):
            relative = path.relative_to(REPO).as_posix()
            if relative.startswith(TOP_LAYER):
                continue
            broken += [
                f"{relative}:{line} imports {name}" for line, name, _ in imports(path) if name in forbidden
            ]
    assert not broken, "layering broken (ARCHITECTURE.md, Layers):\n" + "\n".join(broken)


def test_tensorflow_is_imported_at_module_level_only_where_networks_are_built() -> None:
    found = [
        f"{path.relative_to(REPO).as_posix()}:{line}"
        for path in python_files("perfspec")
        for line, name, module_level in imports(path)
        if module_level and name in ("tensorflow", "keras")
    ]
    assert all(hit.startswith(TENSORFLOW_MODULES) for hit in found), found


def test_the_rule_checker_sees_lazy_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import os\n\ndef f():\n    from prefect import flow\n    import flows.pipeline\n")
    assert [(name, top) for _, name, top in imports(sample)] == [
        ("os", True),
        ("prefect", False),
        ("flows", False),
    ]


@pytest.mark.slow
def test_an_installed_wheel_finds_its_deployments_and_sample_outside_the_checkout(tmp_path: Path) -> None:
    from hatchling.builders.wheel import WheelBuilder

    wheel = Path(
        next(iter(WheelBuilder(str(REPO)).build(directory=str(tmp_path / "dist"), versions=["standard"])))
    )
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
        names = archive.namelist()
    from perfspec.audit import native

    if native.available():  # hatch_build.py compiled clean's scanner into the wheel (a platform wheel)
        assert any(n.startswith("perfspec/audit/_scan") for n in names) and "-py3-none-any" not in wheel.name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PYTHONPATH"] = str(site)  # before the checkout's editable install on sys.path

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
        )

    probe = run(
        "-c",
        "import perfspec, flows, deployments.serve\n"
        "from perfspec.bundled import prefect_file, sample_file\n"
        "sample = sample_file('audit-logs.csv.gz')\n"
        "print(perfspec.__file__, flows.__file__, prefect_file(), sample, sep='\\n')",
    )
    assert probe.returncode == 0, probe.stderr
    assert all(Path(line).is_relative_to(site) for line in probe.stdout.split()), probe.stdout
    assert all(Path(line).exists() for line in probe.stdout.split())
    for command in ("deploy", "serve"):
        shown = run("-m", "perfspec", command, "--help")
        assert shown.returncode == 0 and "Usage" in shown.stdout, shown.stderr
    refused = run("-m", "perfspec", "serve")  # no Prefect server: one line and a hint, not a traceback
    assert (
        refused.returncode == 3 and "PREFECT_API_URL" in refused.stderr and "Traceback" not in refused.stderr
    )
