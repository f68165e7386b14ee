# The C module built from _native/scan.c by hatch_build.py (see perfspec.audit.native).
def scan(
    chunk: bytes | memoryview, max_line_bytes: int, max_id_chars: int, stages: tuple[bytes, ...], /
) -> tuple[int, int, list[tuple[bytes, bytes, bytes, int]], bytes, bytes, bytes, int, bytes, bytes]: ...
