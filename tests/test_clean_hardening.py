"""``perfspec clean`` on the inputs and outputs an attacker (or a hurried user) hands it.

Torn or blank-prefixed logs, output folders that cannot be written, an output folder inside the input
folder, and compressed files with bytes after their end: no event is lost silently, no traceback.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import errno
import gzip
import io
import json
import lzma
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from perfspec.audit import clean as clean_module
from perfspec.audit.clean import clean_sources
from perfspec.audit.rejects import read_rejects
from perfspec.audit.sources import expand_sources, open_source
from perfspec.errors import EnvironmentProblem
from perfspec.settings import CleanSettings
from tests.test_clean import REPO, assert_counts_add_up, event, jsonl, read_events, run_cli

EVENTS = [event(f"id-{i:02d}", verb=["create", "delete", "patch"][i % 3]) for i in range(20)]
LOG = jsonl(*EVENTS)
COMPRESSIONS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "xz": lzma.compress,
    "bz2": bz2.compress,
}


def _torn(line: bytes, columns: int | None = None) -> bytes:
    """The tail of ``line`` as a copy from the middle of a log leaves it (``columns``: as many CSV fields)."""
    for cut in range(len(line) // 3 if columns is None else 1, len(line) - 2):
        tail = line[cut:]
        if columns is None or len(next(csv.reader([tail.decode()]))) == columns:
            return tail
    raise AssertionError("no such cut")


def _csv_line(audit_id: str) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(
        ['{"name":"master"}', "2024-05-01T10:00:00.123456Z", "alice", "create", "pods", "", "p", "",
         "/api/v1/namespaces/ns/pods", audit_id, "ResponseComplete", "201", "", "", ""]
    )  # fmt: skip
    return out.getvalue().encode()


# --- 9: the format is decided from several records ----------------------------------------------------


@pytest.mark.parametrize("columns", [None, 15], ids=["fragment", "fragment-with-15-csv-fields"])
def test_a_torn_first_line_is_one_reject_and_the_rest_is_kept(tmp_path: Path, columns: int | None) -> None:
    first, rest = LOG.split(b"\n", 1)
    log = tmp_path / "middle.log"
    log.write_bytes(_torn(first, columns) + b"\n" + rest)
    summary = clean_sources([log], tmp_path / "out", CleanSettings())
    assert_counts_add_up(summary)
    assert summary.files[0].format == "jsonl"
    assert (summary.read, summary.kept, summary.rejected) == (20, 19, 1)
    (reject,) = read_rejects(tmp_path / "out" / "rejects.jsonl")
    assert (reject["line"], reject["reason"]) == (1, "invalid-json")
    assert [r["audit_id"] for r in read_events(tmp_path / "out")] == [f"id-{i:02d}" for i in range(1, 20)]


def test_a_torn_file_inside_a_directory_is_read_not_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    first, rest = LOG.split(b"\n", 1)
    (folder / "a.log").write_bytes(_torn(first) + b"\n" + rest)
    summary = clean_sources([folder], tmp_path / "out", CleanSettings())
    assert summary.skipped_files == []
    assert (summary.read, summary.kept, summary.rejected) == (20, 19, 1)


def test_a_torn_first_csv_row_is_one_reject(tmp_path: Path) -> None:
    rows = b"".join(_csv_line(f"c{i}") for i in range(10))
    log = tmp_path / "middle.csv"
    log.write_bytes(_torn(_csv_line("c-torn").rstrip(b"\n"), 9) + b"\n" + rows)
    summary = clean_sources([log], tmp_path / "out", CleanSettings())
    assert summary.files[0].format == "logstash-csv"
    assert (summary.read, summary.kept, summary.rejected) == (11, 10, 1)
    assert summary.reject_reasons == {"bad-csv": 1}


@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("blank", [b"\n", b"  \r\n", b"\t\n"])
def test_more_than_64k_of_leading_blank_lines_lose_nothing(
    tmp_path: Path, blank: bytes, compression: str
) -> None:
    padding = blank * (200_000 // len(blank))
    data = padding + LOG
    log = tmp_path / "padded.log"
    log.write_bytes(data if compression == "none" else gzip.compress(data))
    summary = clean_sources([log], tmp_path / "out", CleanSettings())
    assert (summary.read, summary.kept, summary.rejected) == (20, 20, 0)
    lines = [r["source_line"] for r in read_events(tmp_path / "out")]
    assert lines == [padding.count(b"\n") + 1 + i for i in range(20)]


def test_a_file_of_blank_lines_only_is_still_empty(tmp_path: Path) -> None:
    log = tmp_path / "blank.log"
    log.write_bytes(b" \n" * 200_000)
    with open_source(log) as source:
        assert source.format == "empty"


def test_a_bom_is_dropped_and_line_numbers_kept(tmp_path: Path) -> None:
    log = tmp_path / "bom.log"
    log.write_bytes(b"\xef\xbb\xbf\n" + b"\n" * 100_000 + LOG)
    with open_source(log) as source:
        assert source.format == "jsonl"
        data = b"".join(source.byte_blocks())
    assert data.startswith(b"\n") and data.count(b"\n") == 100_001 + 20
    assert data.endswith(LOG)
    direct = tmp_path / "direct.log"  # a BOM right before the first event (Windows editors write one)
    direct.write_bytes(b"\xef\xbb\xbf" + LOG)
    summary = clean_sources([direct], tmp_path / "out", CleanSettings())
    assert summary.kept == 20 and summary.rejected == 0


def test_documents_and_csv_are_still_told_apart(tmp_path: Path) -> None:
    cases = {
        "pretty.json": b"".join(json.dumps(e, indent=2).encode() + b"\n" for e in EVENTS),
        "array.json": b"[\n" + b",\n".join(orjson.dumps(e) for e in EVENTS) + b"\n]\n",
        "one-line.json": orjson.dumps({"kind": "EventList", "items": EVENTS}),
        "rows.csv": b"".join(_csv_line(f"c{i}") for i in range(40)),
    }
    found = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with open_source(tmp_path / name) as source:
            found[name] = source.format
    assert found == {
        "pretty.json": "json-document",
        "array.json": "json-document",
        "one-line.json": "jsonl",
        "rows.csv": "logstash-csv",
    }


def test_a_skipped_file_is_reported_on_stderr_and_in_the_summary(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "audit.log").write_bytes(LOG)
    (folder / "notes.txt").write_bytes(b"# notes\nnothing here\n")
    for extra in ([], ["--json"]):
        out = tmp_path / f"out{len(extra)}"
        done = run_cli("clean", folder, "--out", out, *extra)
        assert done.returncode == 0, done.stderr
        assert "skipped" in done.stderr and "notes.txt" in done.stderr, done.stderr
        assert "not an audit log" in done.stderr
        skipped = json.loads((out / "summary.json").read_text())["skipped_files"]
        assert [s["file"] for s in skipped] == [str(folder / "notes.txt")]


# --- 10: output problems are one line and exit 3 ------------------------------------------------------


def _assert_environment_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: ") and "hint:" in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr.lower(), done.stderr


def test_out_is_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "audit.log").write_bytes(LOG)
    (tmp_path / "taken").write_text("x")
    _assert_environment_error(run_cli("clean", tmp_path / "audit.log", "--out", tmp_path / "taken"), "taken")
    assert (tmp_path / "taken").read_text() == "x"


def test_out_is_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "audit.log").write_bytes(LOG)
    (tmp_path / "file").write_text("x")
    done = run_cli("clean", tmp_path / "audit.log", "--out", tmp_path / "file" / "sub" / "out")
    _assert_environment_error(done, "file")


@contextlib.contextmanager
def _tmpfs(target: Path, options: str) -> Iterator[Path]:
    """A small tmpfs at ``target`` (root only; the test is skipped where it cannot be mounted)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    target.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def _big_log(path: Path, count: int = 20_000) -> Path:
    """Events with random IDs: outputs that do not compress below a few hundred KiB."""
    path.write_bytes(jsonl(*(event(os.urandom(16).hex()) for _ in range(count))))
    return path


def test_out_on_a_read_only_filesystem(tmp_path: Path) -> None:
    log = _big_log(tmp_path / "audit.log", 100)
    with _tmpfs(tmp_path / "ro", "ro,size=64k") as mounted:
        _assert_environment_error(run_cli("clean", log, "--out", mounted / "out"), "read-only")


@pytest.mark.parametrize("workers", [1, 2])
def test_out_on_a_full_disk(tmp_path: Path, workers: int) -> None:
    log = _big_log(tmp_path / "audit.log")
    env = {**os.environ, "PERFSPEC_CLEAN__PARALLEL_MIN_BYTES": "1000"}
    with _tmpfs(tmp_path / "small", "size=64k") as mounted:
        command = ["clean", str(log), "--out", str(mounted / "out"), "--workers", str(workers)]
        done = subprocess.run(
            [sys.executable, "-m", "perfspec", *command],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=120,
        )
        _assert_environment_error(done, "space")
        assert not (mounted / "out" / "summary.json").exists()
        assert [p.name for p in (mounted / "out").iterdir()] == []  # no temp file left behind


def test_parts_are_compressed_only_when_the_disk_is_short_of_room(tmp_path: Path) -> None:
    """``parts_compression`` auto: uncompressed parts (faster) when the output disk has room for twice
    their expected size (0.4x the JSON), LZ4 otherwise; an explicit choice is kept as it is."""
    log = _big_log(tmp_path / "audit.log")  # ~7 MB: parts of ~3 MB expected
    files = expand_sources([log])
    with _tmpfs(tmp_path / "small", "size=4m") as small, _tmpfs(tmp_path / "large", "size=64m") as large:
        assert (
            clean_module.resolve_parts_compression(CleanSettings(), files, small).parts_compression == "lz4"
        )
        assert (
            clean_module.resolve_parts_compression(CleanSettings(), files, large).parts_compression == "none"
        )
        kept = CleanSettings(parts_compression="lz4")
        assert clean_module.resolve_parts_compression(kept, files, large).parts_compression == "lz4"


@pytest.mark.parametrize("workers", [1, 2])
def test_compressed_and_uncompressed_parts_give_the_same_bytes(tmp_path: Path, workers: int) -> None:
    log = _big_log(tmp_path / "audit.log", 5_000)
    outputs = []
    for compression in ("none", "lz4"):
        out = tmp_path / compression
        settings = CleanSettings(parts_compression=compression, workers=workers, parallel_min_bytes=1024)
        clean_sources([log], out, settings)
        outputs.append([(out / name).read_bytes() for name in ("events.parquet", "rejects.jsonl")])
    assert outputs[0] == outputs[1]


def test_uncompressed_parts_are_written_uncompressed(tmp_path: Path) -> None:
    """The two choices really differ on disk (the outputs above cannot tell them apart)."""
    from perfspec.audit.parts import PartWriter
    from perfspec.audit.readers import event_row

    rows = [
        event_row(orjson.loads(line))
        for line in _big_log(tmp_path / "audit.log", 2_000).read_bytes().splitlines()
    ]
    sizes = {}
    for compression in ("none", "lz4"):
        writer = PartWriter(tmp_path / f"{compression}.arrow", compression)
        writer.begin_file()
        assert writer.write("audit.log", rows, list(range(1, len(rows) + 1)), mixed=False) == []
        part = writer.close()
        assert part.rows == len(rows)
        sizes[compression] = (tmp_path / f"{compression}.arrow").stat().st_size
    assert sizes["none"] > 1.5 * sizes["lz4"], sizes


@pytest.mark.parametrize("where", ["_pass_one", "_pass_two", "write_json_atomic"])
def test_an_os_error_while_writing_is_an_environment_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(clean_module, where, full)
    (tmp_path / "audit.log").write_bytes(LOG)
    with pytest.raises(EnvironmentProblem, match="space") as info:
        clean_sources([tmp_path / "audit.log"], tmp_path / "out", CleanSettings())
    assert info.value.hint


def test_a_helper_killed_midway_is_one_error_and_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper dies of SIGKILL (the OOM killer's way): one error naming the signal, nothing written."""
    from perfspec.audit import worker

    parent, real_run = os.getpid(), worker.run

    def run_or_die(request: dict) -> None:
        if os.getpid() != parent:  # the forked helper (it inherits this patch)
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.01)  # this process must not claim every range before the helper is scheduled
        real_run(request)

    monkeypatch.setattr(worker, "run", run_or_die)
    monkeypatch.setattr(clean_module, "JOB_BYTES", 4096)  # many ranges: the helper surely claims one
    log = _big_log(tmp_path / "audit.log", 2_000)
    settings = CleanSettings(workers=2, parallel_min_bytes=1024)
    with pytest.raises(EnvironmentProblem, match="killed by SIGKILL") as info:
        clean_sources([log], tmp_path / "out", settings)
    assert "--workers 1" in (info.value.hint or "")
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def _fill(_pid: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize(
    ("fate", "error", "hint"),
    [(_kill, "killed by SIGKILL", "--workers 1"), (_fill, "No space left", "free some space")],
    ids=["killed", "disk-full"],
)
def test_the_pass_two_helper_failing_is_one_error_and_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fate: Callable[[int], None], error: str, hint: str
) -> None:
    """Pass 2's helper (the second half of the row groups) dies of SIGKILL, or finds the disk full: one
    error with its own hint, nothing written. Its one-line error reaches this process although
    ``sys.stderr`` is not fd 2 here (pytest's capture; in a terminal, a progress display's proxy)."""
    parent, real_write = os.getpid(), vars(clean_module)["_write_row_groups"]

    def write_or_fail(*args: object) -> None:
        if os.getpid() != parent:
            fate(os.getpid())
        real_write(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(clean_module, "_write_row_groups", write_or_fail)
    log = _big_log(tmp_path / "audit.log", 2_000)
    with pytest.raises(EnvironmentProblem, match=error) as info:
        clean_sources([log], tmp_path / "out", CleanSettings(workers=2, batch_rows=100))
    assert hint in (info.value.hint or "")
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_helpers_work_with_stdout_closed_and_sigchld_ignored(tmp_path: Path) -> None:
    """A daemon's setting: no stdout at all, and children reaped by the system (SIGCHLD ignored)."""
    log = _big_log(tmp_path / "audit.log", 3_000)
    script = f"""
import signal, sys
from pathlib import Path
from perfspec.audit.clean import clean_sources
from perfspec.settings import CleanSettings
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
sys.stdout = None
settings = CleanSettings(workers=2, batch_rows=100, parallel_min_bytes=1024)
summary = clean_sources([Path({str(log)!r})], Path({str(tmp_path / "out")!r}), settings)
sys.stderr.write(f"kept {{summary.kept}}")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.endswith("kept 3000")
    closed = subprocess.run(  # the CLI with its stdout closed (``>&-``)
        [
            "bash",
            "-c",
            f'"{sys.executable}" -m perfspec clean "{log}" --out "{tmp_path / "cli"}" --workers 2 --json >&-',
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert (tmp_path / "cli" / "summary.json").exists(), closed.stderr


def test_pass_two_in_two_processes_writes_what_one_writes(tmp_path: Path) -> None:
    log = _big_log(tmp_path / "audit.log", 3_000)
    for workers in (1, 2, 3):
        clean_sources([log], tmp_path / str(workers), CleanSettings(workers=workers, batch_rows=128))
    one = (tmp_path / "1" / "events.parquet").read_bytes()
    assert (tmp_path / "2" / "events.parquet").read_bytes() == one
    assert (tmp_path / "3" / "events.parquet").read_bytes() == one


def test_a_killed_clean_takes_its_helpers_with_it(tmp_path: Path) -> None:
    """kill -9 of the cleaning process: its forked helper dies too instead of running to its end."""
    log = _big_log(tmp_path / "audit.log", 2_000)
    pids = tmp_path / "helper.pid"
    script = f"""
import os, time
from pathlib import Path
from perfspec.audit import clean, worker
from perfspec.settings import CleanSettings
parent = os.getpid()
def run(request):
    if os.getpid() != parent:
        Path({str(pids)!r}).write_text(str(os.getpid()))
        time.sleep(120)
    time.sleep(0.5)  # this process must not claim every range before the helper is scheduled
worker.run = run
clean.JOB_BYTES = 4096
settings = CleanSettings(workers=2, parallel_min_bytes=1024)
clean.clean_sources([Path({str(log)!r})], Path({str(tmp_path / "out")!r}), settings)
"""
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while not pids.exists() or not pids.read_text():
            assert time.monotonic() < deadline and process.poll() is None, "the helper never started"
            time.sleep(0.05)
        helper = int(pids.read_text())
        process.kill()
        process.wait()
        deadline = time.monotonic() + 10
        while _alive(helper):
            assert time.monotonic() < deadline, "the helper outlived its parent"
            time.sleep(0.05)
    finally:
        process.kill()
        if pids.exists() and pids.read_text() and _alive(int(pids.read_text())):
            os.kill(int(pids.read_text()), signal.SIGKILL)  # this test failed: do not leave it behind


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by init, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


# --- 11: the output folder inside the input folder ----------------------------------------------------


@pytest.mark.parametrize("out_name", ["clean", "deep/er/clean", "."])
def test_clean_into_its_own_input_folder_is_stable(tmp_path: Path, out_name: str) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.log").write_bytes(LOG)
    (folder / "b.log").write_bytes(jsonl(event("b-1"), {"kind": "Pod"}))
    out = folder / out_name
    counts = []
    for _ in range(3):
        done = run_cli("clean", folder, "--out", out, "--json")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        counts.append((summary["read"], summary["kept"], summary["rejected"], len(summary["files"])))
    assert counts == [(22, 21, 1, 2)] * 3


def test_an_earlier_clean_output_inside_the_input_folder_is_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.log").write_bytes(LOG)
    clean_sources([folder / "a.log"], folder / "old-run", CleanSettings())
    (folder / "old-run" / "notes.log").write_bytes(LOG)  # inside a clean output: not an input either
    assert [p.name for p, _ in expand_sources([folder])] == ["a.log"]
    summary = clean_sources([folder], tmp_path / "out", CleanSettings())
    assert (summary.read, summary.rejected) == (20, 0)


def test_a_summary_json_that_clean_did_not_write_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "summary.json").write_bytes(orjson.dumps(EVENTS[0]))
    (folder / "sub" / "events.parquet").write_bytes(b"PAR1")
    assert sorted(p.name for p, _ in expand_sources([folder])) == ["events.parquet", "summary.json"]


# --- 12: bytes after the end of a compressed stream ---------------------------------------------------


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("final_newline", [True, False])
def test_trailing_garbage_keeps_every_event_and_marks_the_file(
    tmp_path: Path, compression: str, final_newline: bool
) -> None:
    data = LOG if final_newline else LOG.rstrip(b"\n")
    log = tmp_path / f"audit.{compression}"
    log.write_bytes(COMPRESSIONS[compression](data) + b"garbage!" * 4)
    summary = clean_sources([log], tmp_path / "out", CleanSettings())
    assert_counts_add_up(summary)
    assert summary.kept == 20
    (counts,) = summary.files
    assert not counts.complete
    assert (
        counts.error is not None and f"32 bytes of trailing garbage after the {compression}" in counts.error
    )
    assert [f.file for f in summary.incomplete_files] == [str(log)]
    assert summary.rejected == 1 and summary.read == 21
    assert summary.reject_reasons == {"trailing-garbage": 1}


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_trailing_garbage_in_a_json_document_is_marked_too(tmp_path: Path, compression: str) -> None:
    log = tmp_path / f"pretty.{compression}"
    pretty = b"".join(json.dumps(e, indent=2).encode() + b"\n" for e in EVENTS)
    log.write_bytes(COMPRESSIONS[compression](pretty) + b"\x01junk")
    summary = clean_sources([log], tmp_path / "out", CleanSettings())
    assert summary.kept == 20 and not summary.files[0].complete
    assert "5 bytes of trailing garbage" in (summary.files[0].error or "")


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_concatenated_streams_and_nul_padding_are_read_whole(tmp_path: Path, compression: str) -> None:
    pack = COMPRESSIONS[compression]
    half = len(EVENTS) // 2
    log = tmp_path / f"audit.{compression}"
    log.write_bytes(pack(jsonl(*EVENTS[:half])) + b"\0" * 8 + pack(jsonl(*EVENTS[half:])) + b"\0" * 1000)
    summary = clean_sources([log], tmp_path / "out", CleanSettings())
    assert (summary.read, summary.kept, summary.rejected) == (20, 20, 0)
    assert summary.files[0].complete and summary.incomplete_files == []


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_trailing_garbage_on_the_command_line_exits_2(tmp_path: Path, compression: str) -> None:
    log = tmp_path / f"audit.{compression}"
    log.write_bytes(COMPRESSIONS[compression](LOG) + b"garbage")
    done = run_cli("clean", log, "--out", tmp_path / "out")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "7 bytes of trailing garbage" in done.stderr
    assert (tmp_path / "out" / "summary.json").exists()


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_large_multi_stream_files_round_trip(tmp_path: Path, compression: str) -> None:
    data = b"".join(b'{"n":"%s"}\n' % os.urandom(48).hex().encode() for _ in range(60_000))  # > 6 MB
    pack = COMPRESSIONS[compression]
    log = tmp_path / f"big.{compression}"
    log.write_bytes(pack(data) + pack(data[:1000]))
    with open_source(log) as source:
        assert b"".join(source.byte_blocks()) == data + data[:1000]


def test_a_preamble_of_lines_that_fit_no_format_does_not_hide_the_events(tmp_path: Path) -> None:
    log = tmp_path / "with-preamble.log"
    log.write_bytes(b"".join(b"garbage line %d\n" % i for i in range(20)) + LOG)
    summary = clean_sources([log], tmp_path / "out", CleanSettings())
    assert summary.kept == 20 and summary.rejected == 20 and not summary.skipped_files
