"""Hatchling build hook: compiles ``perfspec.audit._scan`` (``perfspec/audit/_native``: the native
JSON-lines scanner of ``perfspec clean`` and the vendored yyjson) for the wheel and the editable install.

Why a hook and not setuptools: the project builds with hatchling; this adds one C extension with the
compiler Python itself was built with (``sysconfig``), no other build tool. Without a working compiler the
build goes on without the module: ``perfspec clean`` then uses its pure-Python path (same outputs,
several times slower) and ``perfspec doctor``-style checks can tell (``perfspec.audit.native.available``).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCES = ("perfspec/audit/_native/scan.c", "perfspec/audit/_native/yyjson.c")
TARGET_DIR = "perfspec/audit"


def compile_scanner(root: Path) -> Path | None:
    """Build the extension next to its package (in place: the editable install imports it from there)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = root / TARGET_DIR / f"_scan{suffix}"
    sources = [root / source for source in SOURCES]
    if target.exists() and all(target.stat().st_mtime >= s.stat().st_mtime for s in sources):
        return target
    compiler = shlex.split(sysconfig.get_config_var("CC") or "cc")
    flags = ["-O3", "-fPIC", "-shared", "-std=c99", "-I", sysconfig.get_paths()["include"]]
    if sys.platform == "darwin":
        flags += ["-undefined", "dynamic_lookup"]
    partial = target.with_name(target.name + ".tmp")
    command = [*compiler, *flags, *map(str, sources), "-o", str(partial)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", None) or str(error)
        print(f"perfspec: the native scanner was not built ({detail.strip()[:300]}); "
              "perfspec clean will use its pure-Python path", file=sys.stderr)  # fmt: skip
        partial.unlink(missing_ok=True)
        return None
    partial.replace(target)
    return target


class NativeScannerHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        built = compile_scanner(Path(self.root))
        if built is None:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # the editable install finds it in the source tree
            build_data["force_include"][str(built)] = f"{TARGET_DIR}/{built.name}"
