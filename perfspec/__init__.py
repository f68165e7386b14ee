"""perfspec: the learning phase of PerfSPEC (next Kubernetes API action prediction)."""

from importlib.metadata import PackageNotFoundError, version

try:  # one source of truth: pyproject.toml's version, as installed
    __version__ = version("perfspec")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
