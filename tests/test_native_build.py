"""The native scanner of `perfspec clean` (issue 15) is built by the install; clean works without it.

`hatch_build.py` compiles `perfspec.audit._scan` with Python's own C compiler; without a compiler the
install goes on and clean falls back to its pure-Python path. A silent fallback would hide a 3x slowdown,
so where a compiler exists the module must be there.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from perfspec.audit import native

REPO = Path(__file__).resolve().parent.parent


def test_the_scanner_is_built_where_a_compiler_exists() -> None:
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): clean runs its pure-Python path here")
    assert native.available(), "perfspec.audit._scan is missing: run `make setup` (it compiles it)"


def test_the_build_hook_compiles_a_scanner_that_imports(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO))
    try:
        from hatch_build import SOURCES, compile_scanner
    finally:
        sys.path.remove(str(REPO))
    for source in SOURCES:
        (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / source, tmp_path / source)
        (tmp_path / "perfspec" / "audit" / "_native" / "yyjson.h").write_bytes(
            (REPO / "perfspec/audit/_native/yyjson.h").read_bytes()
        )
    built = compile_scanner(tmp_path)
    if built is None:
        pytest.skip("no working C compiler here")
    load = (
        "import importlib.util as u, sys\n"
        "spec = u.spec_from_file_location('_scan', sys.argv[1])\n"
        "module = u.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(module.scan(b'{}\\n', 100, 256, (b'x',))[0])\n"
    )
    probe = subprocess.run(
        [sys.executable, "-c", load, str(built)], capture_output=True, text=True, timeout=60
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "1", probe.stderr


def test_clean_without_the_module_gives_the_same_outputs(tmp_path: Path) -> None:
    """The fallback an install without a compiler gets: the import fails, the pure-Python path runs."""
    log = tmp_path / "audit.log"
    lines = [
        b'{"kind":"Event","auditID":"a%d","stage":"ResponseComplete","verb":"get","requestReceivedTimestamp":'
        b'"2024-05-01T00:00:0%dZ","objectRef":{"resource":"pods"}}' % (i, i)
        for i in range(10)
    ]
    log.write_bytes(b"\n".join([*lines[:5], b"{torn", *lines[5:]]) + b"\n")
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'perfspec.audit._scan': raise ImportError('blocked')\n"
        "if sys.argv[2] == 'blocked': sys.meta_path.insert(0, Block())\n"
        "from pathlib import Path\n"
        "from perfspec.audit import native\n"
        "from perfspec.audit.clean import clean_sources\n"
        "from perfspec.settings import CleanSettings\n"
        "assert native.available() == (sys.argv[2] != 'blocked')\n"
        "clean_sources([Path(sys.argv[1])], Path(sys.argv[3]), CleanSettings())\n"
    )
    for mode in ("blocked", "native"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(log), mode, str(tmp_path / mode)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if mode == "native" and not native.available():
            pytest.skip("the native scanner is not built here")
        assert done.returncode == 0, done.stderr
    for name in ("events.parquet", "rejects.jsonl", "summary.json"):
        assert (tmp_path / "blocked" / name).read_bytes() == (tmp_path / "native" / name).read_bytes(), name
