"""``python -m bench [clean|predict|sweep|receiver|live|scaleout] [options]``: one benchmark, or all
with no name.

Each benchmark is a module ``bench.<name>_bench`` with ``main(argv: list[str] | None) -> None``;
benchmarks whose module is not there yet are skipped with a note.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("clean", "predict", "sweep", "receiver", "live", "scaleout")


def _load(name: str):  # type: ignore[no-untyped-def]
    try:
        return importlib.import_module(f"bench.{name}_bench")
    except ModuleNotFoundError as exc:
        if exc.name == f"bench.{name}_bench":
            return None
        raise


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print("benchmarks:", ", ".join(BENCHMARKS))
        return 0
    if argv and argv[0] in BENCHMARKS:
        module = _load(argv[0])
        if module is None:
            print(
                f"benchmark {argv[0]!r} is not available (bench/{argv[0]}_bench.py missing)", file=sys.stderr
            )
            return 2
        module.main(argv[1:])
        return 0
    if argv:
        print(f"unknown benchmark {argv[0]!r}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in BENCHMARKS:
        module = _load(name)
        if module is None:
            print(f"(skipping {name}: bench/{name}_bench.py not present)")
            continue
        print(f"== {name} ==", flush=True)
        module.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
