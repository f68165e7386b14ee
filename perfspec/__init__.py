"""perfspec: the learning phase of PerfSPEC (next Kubernetes API action prediction)."""

__version__ = "0.1.0"
