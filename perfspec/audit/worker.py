"""A parallel cleaning worker: pass 1 over one byte range of a large uncompressed JSON-lines file, or
over one whole file of any format.

Started by ``clean._clean_in_workers`` as ``Helper.cleaning(payload)``: forked on Linux (the child starts
working at once, with every module already imported: a spawned interpreter spends ~0.3 s of a core
importing them), else run as ``python -m perfspec.audit.worker '<json request>'``. Either way it reports
failures the same way: its exit status and the last lines of its stderr. Also called as
``run(request)`` on an executor's worker (a Dask cluster: ``perfspec.scaleout``). It writes into
``out_dir``: ``part.arrow`` (Arrow IPC), ``rejects.jsonl`` (line numbers relative to the range),
``hashes.npy``, ``ranks.npy`` and, last, ``result.json`` (counts, lines in the range, time range; for a
whole file, its ``FileCounts`` and rows).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path


class _NoPandas:
    """A meta-path finder that refuses ``pandas`` (used only around pyarrow's probe)."""

    @staticmethod
    def find_spec(name: str, _path: object = None, _target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("pandas probe skipped")
        return None


def skip_pandas_probe() -> None:
    """Skip pyarrow's one-time pandas import (~0.7 s) in a process that never hands it pandas objects.

    pyarrow imports pandas the first time it converts Python objects, only to ask whether they are
    pandas objects. Making that probe's import fail once caches "no pandas objects here" inside
    pyarrow; the import system is restored, so an explicit ``import pandas`` later still works.
    """
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    blocker = _NoPandas()
    sys.meta_path.insert(0, blocker)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(blocker)


def _counting(blocks: Iterator[bytes], tally: list[int]) -> Iterator[bytes]:
    for block in blocks:
        tally[0] += block.count(b"\n")
        yield block


def run(request: dict) -> None:
    """One job: a byte range (``start``, ``end``) of a JSON-lines file, or the ``whole`` file. Also runs
    inside ``clean_sources``' own process and on Dask workers: it must not change their process state."""
    import numpy as np

    from perfspec.audit import native
    from perfspec.audit.pass1 import FileCounts, PartReader
    from perfspec.audit.rejects import RejectWriter
    from perfspec.audit.sources import range_blocks, range_chunks, split_lines
    from perfspec.fileio import write_json_atomic
    from perfspec.settings import CleanSettings

    enabled = gc.isenabled()
    gc.disable()
    settings = CleanSettings.model_validate(request["settings"])
    out = Path(request["out_dir"])
    newlines = [0]
    counts = FileCounts(request["display"], "jsonl", "none")
    try:
        with open(out / "rejects.jsonl", "wb") as handle:
            rejects = RejectWriter(handle, settings.reject_raw_max_chars)
            collector = PartReader(out / "part.arrow", settings, rejects)
            if request.get("whole"):
                from perfspec.audit.sources import open_source

                with open_source(Path(request["path"])) as source:
                    counts = collector.read_source(source)
            else:
                collector.begin_file()
                path, start, end = Path(request["path"]), request["start"], request["end"]
                if settings.native and native.available():
                    chunks = range_chunks(path, start, end, settings.max_line_bytes)
                    collector.read_jsonl_chunks(chunks, request["display"], counts)
                    newlines[0] = collector.lines_seen
                else:
                    lines = split_lines(
                        _counting(range_blocks(path, start, end), newlines), settings.max_line_bytes
                    )
                    collector.read_jsonl_lines(lines, request["display"], counts)
            part = collector.close()
    finally:
        if enabled:
            gc.enable()
    np.save(out / "hashes.npy", part.hashes)
    np.save(out / "ranks.npy", part.ranks)
    write_json_atomic(
        out / "result.json",
        {
            "read": counts.read,
            "rejected": rejects.count,
            "rows": part.rows,
            "lines": newlines[0],
            "min_ts_us": part.min_ts_us,
            "max_ts_us": part.max_ts_us,
            "counts": asdict(counts),
            "file_rows": part.file_rows,
        },
    )


def run_claimed(payload: dict) -> None:
    """Run the jobs of ``payload["jobs"]`` that no other process has claimed yet, in order: a job is
    claimed by creating ``<claims>/<index>`` exclusively (atomic on a local file system), so the parent
    and its worker processes share the ranges of one file without any other channel."""
    claims = Path(payload["claims"])
    for index, request in enumerate(payload["jobs"]):
        try:
            os.close(os.open(claims / str(index), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            continue
        run(request)


#: Exit status of a worker that could not write its part (a full disk): an environment problem.
EXIT_WRITE_FAILED = 3


def _serve(payload: dict) -> int:
    """A helper process's whole job; an OSError (its inputs are checked by the parent) is one line and
    exit 3."""
    skip_pandas_probe()  # this process only cleans: pyarrow never needs pandas here
    return writing_exit_code(lambda: run_claimed(payload) if "jobs" in payload else run(payload))


def main(argv: list[str]) -> int:
    """``python -m perfspec.audit.worker '<json payload>'``: the spawned helper."""
    return _serve(json.loads(argv[0]))


#: Whether helpers are forked: fork is multiprocessing's default start method only on Linux.
CAN_FORK = sys.platform == "linux"


class Helper:
    """A helper process working beside this one: ``kill()``, then ``finish()`` -> (exit status, its
    stderr). The status reads as ``Popen.returncode`` does: negative for a signal.

    ``Helper(work)`` forks a child that runs ``work()`` and exits with what it returns; where fork is
    not the platform's way (``CAN_FORK``), it runs the command ``spawn`` instead (RuntimeError without
    one)."""

    def __init__(self, work: Callable[[], int], spawn: list[str] | None = None) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.pid = 0
        if not CAN_FORK:
            if spawn is None:
                raise RuntimeError("this helper needs fork (Linux)")
            self.process = subprocess.Popen(  # stderr in a pipe, not a file: a full disk must not hide it
                spawn, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            return
        for stream in (sys.stdout, sys.stderr):  # nothing buffered here may be written twice (the child)
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.flush()
        read_end, write_end = os.pipe()
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into the caller's frames
            _forked_child(work, read_end, write_end, parent)
        os.close(write_end)
        self.errors = read_end

    @classmethod
    def cleaning(cls, payload: dict) -> Helper:
        """A helper cleaning the ranges of ``payload`` that nobody has claimed (``run_claimed``)."""
        spawn = [sys.executable, "-m", "perfspec.audit.worker", json.dumps(payload)]
        return cls(functools.partial(_serve, payload), spawn)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def finish(self) -> tuple[int, bytes]:
        """Wait for the helper to end: its exit status and everything it wrote to stderr."""
        if self.process is not None:
            _, err = self.process.communicate()
            return self.process.returncode, err
        chunks = []
        with os.fdopen(self.errors, "rb") as stream:
            while chunk := stream.read(65536):
                chunks.append(chunk)
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:  # SIGCHLD ignored by the host: reaped already, status unknown (as Popen,
            return 0, b"".join(chunks)  # read as success: the callers check that the work was done)
        return os.waitstatus_to_exitcode(status), b"".join(chunks)


def writing_exit_code(work: Callable[[], None]) -> int:
    """Run a helper's ``work``: 0, or an OSError (a full disk) as one line on stderr and exit 3."""
    try:
        work()
    except OSError as exc:
        print(f"error: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_WRITE_FAILED
    return 0


def _forked_child(work: Callable[[], int], read_end: int, write_end: int, parent: int) -> None:
    """The forked helper: stderr into the pipe, killed with its parent, ``work()``, then ``os._exit``
    (no ``finally`` or ``atexit`` of the parent's runs here: its temporary folders stay its own)."""
    code = 1
    try:
        os.close(read_end)
        os.dup2(write_end, 2)
        os.close(write_end)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # the parent's stdout may carry --json: nothing of the child's goes there
        os.close(devnull)
        # New stream objects on fds 1 and 2: the inherited ones may be a progress display's proxies
        # (rich), pytest's capture or a notebook's, which would not write into the pipe.
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (the process ends with os._exit)
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _die_with_parent(parent)
        code = work()
    except BaseException:  # anything at all: reported on stderr, never raised into the parent's code
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(code)


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent dies (a kill -9 of ``perfspec clean`` must not leave it
    running to the end of its ranges)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
