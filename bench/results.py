"""Each benchmark's section of ``bench/RESULTS.md``: the text between its two markers, replaced whole."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, name: str, text: str) -> None:
    """Replace the ``<!-- NAME-bench:start/end -->`` section of ``path`` (appended if absent), atomically."""
    from perfspec.fileio import write_text_atomic

    start, end = f"<!-- {name}-bench:start -->", f"<!-- {name}-bench:end -->"
    current = path.read_text() if path.is_file() else "# Benchmark results\n"
    block = f"{start}\n{text}\n{end}"
    if start in current and end in current:
        head, rest = current.split(start, 1)
        current = head + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    write_text_atomic(path, current)
