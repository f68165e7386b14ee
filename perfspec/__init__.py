"""perfspec: the learning phase of PerfSPEC (next Kubernetes API action prediction)."""

from __future__ import annotations

from functools import cache


@cache
def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:  # one source of truth: pyproject.toml's version, as installed
        return version("perfspec")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


def __getattr__(name: str) -> str:
    """``perfspec.__version__``, looked up on first use: reading the installed distributions costs
    ~40 ms, which every ``perfspec`` process (and each cleaning helper) would otherwise pay at import."""
    if name == "__version__":
        return _installed_version()
    raise AttributeError(f"module 'perfspec' has no attribute {name!r}")
