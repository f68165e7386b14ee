"""Action sequence -> vocabulary + windows (W past actions -> next), split without leakage.

Why chronological (or contiguous k-fold) splits and per-segment windows: adjacent windows overlap in
W-1 actions, so a random split would put near-copies of test windows into training. Each split is a
list of contiguous segments of the sequence and every window lies inside one segment, so no window
crosses a boundary. The vocabulary is built from the training part only: an action first seen in
validation/test maps to ``<unk>`` exactly as it would for a model in production.

Why repeats are removed first (``perfspec.learn.repeats``): a sequence that contains a verbatim copy of
a long earlier span (the paper corpus is two identical copies) puts its test windows into training.
The copy is cut out before the split and the kept pieces become segment boundaries, so no window joins
two actions that were never adjacent. ``leakage`` measures what is left: the share of validation and
test windows (context + target) that occur verbatim in the training part.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perfspec.actions.actors import actor_class
from perfspec.errors import InputError
from perfspec.fileio import atomic_open, write_json_atomic
from perfspec.learn.repeats import Repeat, remove_repeats, repeat_threshold
from perfspec.learn.streams import StreamLayout
from perfspec.learn.vocab import UNK, Vocabulary
from perfspec.settings import DatasetSettings

SPLITS = ("train", "val", "test")
FORMAT_VERSION = 2
_TOKEN = re.compile(r"^\S+$")
# what an action token looks like (verb_resource[/subresource]); a file of other lines is refused
_ACTION = re.compile(r"^[a-z]+_[A-Za-z0-9.\-]*(/[A-Za-z0-9.\-]+)?$")
_MAX_FOREIGN_SHARE = 0.1
LEAKAGE_WARNING = 0.5  # above this share of leaked windows, scores measure memorisation


@dataclass(frozen=True)
class ActionsFile:
    """Actions read from a file, with the lines that were set aside (kept, never silently lost)."""

    actions: list[str]
    malformed: list[tuple[int, str]] = field(default_factory=list)


def read_actions(path: Path) -> ActionsFile:
    """Read one action a line; blank lines are ignored, lines with inner whitespace are set aside.

    A file that is not an action list (binary, compressed, an audit log) is an ``InputError``: no line,
    or (from 20 lines on) more than a tenth of them, shaped like ``verb_resource`` means it is something
    else.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"actions file not found: {path}", hint="run `perfspec actions` first")
    _refuse_non_action_file(path)
    actions: list[str] = []
    malformed: list[tuple[int, str]] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            token = line.strip()
            if not token:
                continue
            if _TOKEN.match(token) and token != UNK:
                actions.append(token)
            else:
                malformed.append((number, token[:200]))
    if not actions:
        detail = f" ({len(malformed)} malformed lines)" if malformed else ""
        raise InputError(
            f"no actions in {path}{detail}", hint="expected one action token (e.g. create_pods) a line"
        )
    return ActionsFile(actions, malformed)


def _refuse_non_action_file(path: Path) -> None:
    """Binary content or mostly non-action lines -> InputError naming what to run instead."""
    hint = (
        "expected one action token (e.g. create_pods) a line; for an audit log run `perfspec clean` and "
        "`perfspec actions` first, or `perfspec pipeline --source FILE`"
    )
    with open(path, "rb") as handle:
        head = handle.read(64 * 1024)
    if b"\0" in head or head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        raise InputError(f"{path} is not a text file of actions (binary or compressed)", hint=hint)
    lines = [line.strip() for line in head.decode("utf-8", errors="replace").splitlines()[:2000]]
    lines = [line for line in lines if line]
    foreign = sum(1 for line in lines if not _ACTION.match(line))
    if lines and (foreign == len(lines) or (len(lines) >= 20 and foreign > _MAX_FOREIGN_SHARE * len(lines))):
        example = next(line for line in lines if not _ACTION.match(line))[:80]
        raise InputError(
            f"{path} does not look like an action list: {foreign} of its first {len(lines)} lines are not "
            f"verb_resource tokens (e.g. {example!r})",
            hint=hint,
        )


def load_actions(path: Path) -> list[str]:
    """The action tokens of ``path`` in order (see ``read_actions``); empty file -> InputError."""
    return read_actions(path).actions


def segments_for(n: int, settings: DatasetSettings) -> dict[str, list[tuple[int, int]]]:
    """Half-open ``[start, end)`` position ranges of each split (contiguous, disjoint, covering 0..n)."""
    if settings.train_fraction + settings.val_fraction >= 1:
        raise InputError(
            "train_fraction + val_fraction must be < 1 (the rest is the test part)",
            hint=f"got {settings.train_fraction} + {settings.val_fraction}",
        )
    n_val = round(n * settings.val_fraction)
    if settings.split == "chronological":
        n_train = round(n * settings.train_fraction)
        return {
            "train": [(0, n_train)],
            "val": [(n_train, n_train + n_val)],
            "test": [(n_train + n_val, n)],
        }
    # kfold: the sequence is cut into `folds` contiguous blocks; block `fold` is the test part, the
    # validation part is the stretch of `val_fraction` right before it (right after it for fold 0).
    if settings.fold >= settings.folds:
        raise InputError(f"fold {settings.fold} does not exist", hint=f"use 0..{settings.folds - 1}")
    bounds = [round(i * n / settings.folds) for i in range(settings.folds + 1)]
    t0, t1 = bounds[settings.fold], bounds[settings.fold + 1]
    if settings.fold > 0:
        v0, v1 = max(0, t0 - n_val), t0
    else:
        v0, v1 = t1, min(n, t1 + n_val)
    train = [(a, b) for a, b in ((0, min(t0, v0)), (max(t1, v1), n)) if b > a]
    return {"train": train, "val": [(v0, v1)], "test": [(t0, t1)]}


def cut_at(segments: Sequence[tuple[int, int]], pieces: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``segments`` split wherever a piece ends (a window must not join two pieces)."""
    out = []
    for a, b in segments:
        for p, q in pieces:
            lo, hi = max(a, p), min(b, q)
            if hi > lo:
                out.append((lo, hi))
    return out


def make_windows(
    ids: np.ndarray, segments: Sequence[tuple[int, int]], window: int, min_context: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows inside each segment: ``x[i]`` = the ``window`` ids before ``pos[i]``; ``y = ids[pos]``.

    ``min_context`` (default ``window``): a target needs this many earlier actions of its segment; a
    shorter history is left-padded with ``<unk>`` (0), as a live stream that just started.
    """
    first = window if min_context is None else min(max(min_context, 1), window)
    xs, ys, positions = [], [], []
    for start, end in segments:
        if end - start <= first:
            continue
        part = np.concatenate([np.zeros(window - first, dtype=ids.dtype), ids[start:end]])
        xs.append(np.lib.stride_tricks.sliding_window_view(part[:-1], window))
        ys.append(part[window:])
        positions.append(np.arange(start + first, end, dtype=np.int64))
    if not xs:
        return np.zeros((0, window), np.int32), np.zeros(0, np.int32), np.zeros(0, np.int64)
    return (
        np.ascontiguousarray(np.concatenate(xs), dtype=np.int32),
        np.concatenate(ys).astype(np.int32),
        np.concatenate(positions),
    )


def fingerprint_of(
    actions: Sequence[str], settings: DatasetSettings, actors: Sequence[str | None] | None = None
) -> str:
    """sha256 of the action sequence (+ who made each action, for actor streams) + the settings that
    shape the windows and the split."""
    split: dict[str, object] = {
        "window": settings.window,
        "train_fraction": settings.train_fraction,
        "val_fraction": settings.val_fraction,
        "min_count": settings.min_count,
        "split": settings.split,
        "format": FORMAT_VERSION,
        "keep_repeats": settings.keep_repeats,
    }
    if not settings.keep_repeats:
        split |= {"repeat_min": [settings.repeat_min_actions, settings.repeat_min_fraction]}
    if settings.split == "kfold":
        split |= {"folds": settings.folds, "fold": settings.fold}
    digest = hashlib.sha256()
    digest.update("\n".join(actions).encode())
    digest.update(b"\0")
    if settings.streams == "actor":  # who made each action shapes the windows
        split |= {"streams": "actor", "actor_groups": list(settings.actor_groups)}
        digest.update("\n".join(u or "" for u in actors or ()).encode())
        digest.update(b"\0")
    digest.update(json.dumps(split, sort_keys=True).encode())
    return digest.hexdigest()


@dataclass
class Dataset:
    """Encoded sequence, vocabulary and the windows of each split; what training and evaluation read."""

    settings: DatasetSettings
    vocab: Vocabulary
    ids: np.ndarray
    segments: dict[str, list[tuple[int, int]]]
    fingerprint: str
    source: str = ""
    malformed_lines: int = 0
    # the action names themselves (distinct names + one code per position): ``ids`` map actions outside
    # the vocabulary to <unk>, but re-scoring another model (champion rule) needs the real names.
    # None for datasets saved before they were kept.
    name_table: np.ndarray | None = field(default=None, repr=False)
    name_codes: np.ndarray | None = field(default=None, repr=False)
    # verbatim repeats cut out before the split (positions in the original sequence) and its length
    repeats: list[Repeat] = field(default_factory=list)
    original_actions: int = 0
    # actor streams (``perfspec.learn.streams``): where each actor's stream lies, and the split in log
    # positions (``segments`` are then dataset positions); None for the global stream
    layout: StreamLayout | None = field(default=None, repr=False)
    log_segments: dict[str, list[tuple[int, int]]] | None = None
    _windows: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def window(self) -> int:
        return self.settings.window

    @property
    def streams(self) -> str:
        """``global`` or ``actor`` (what the windows follow)."""
        return "actor" if self.layout is not None else "global"

    @property
    def min_context(self) -> int:
        """Earlier actions a target needs in its segment: a full window on the global stream; one on an
        actor's stream (short histories are padded, else the many small streams lose most targets)."""
        return 1 if self.layout is not None else self.window

    @property
    def log_split(self) -> dict[str, list[tuple[int, int]]]:
        """The split in log positions (the global stream's are its dataset positions)."""
        return self.log_segments if self.log_segments is not None else self.segments

    def from_log(self, log_segments: dict[str, list[tuple[int, int]]]) -> dict[str, list[tuple[int, int]]]:
        """Dataset segments of a split given in log positions (cut where a repeat was removed)."""
        cut = {split: cut_at(parts, self.pieces) for split, parts in log_segments.items()}
        if self.layout is None:
            return cut
        return {split: self.layout.dataset_segments(parts) for split, parts in cut.items()}

    def stream_info(self) -> dict[str, object]:
        """What a model trained on this dataset must know to be served (bundle info, MLflow)."""
        if self.layout is None:
            return {"streams": "global"}
        seen = {int(c) for a, b in self.segments["train"] for c in np.unique(self.layout.codes[a:b])}
        return {
            "streams": "actor",
            "actor_groups": list(self.settings.actor_groups),
            "actors": sorted(str(self.layout.names[c]) for c in seen),
        }

    def windows(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of one split: ``x`` int32 (n, W), ``y`` int32 (n,)."""
        x, y, _ = self._split_windows(split)
        return x, y

    def positions(self, split: str) -> np.ndarray:
        """Position in the sequence of each window's target (for tracing predictions back)."""
        return self._split_windows(split)[2]

    @property
    def has_names(self) -> bool:
        return self.name_table is not None and self.name_codes is not None

    def names(self, start: int, end: int) -> list[str]:
        """Action names at positions ``[start, end)``; vocabulary-decoded (with <unk>) if not kept."""
        if self.name_table is None or self.name_codes is None:
            return self.vocab.decode(self.ids[start:end])
        return [str(name) for name in self.name_table[self.name_codes[start:end]]]

    def sequences(self, split: str) -> list[np.ndarray]:
        """The contiguous id segments of one split (what the n-gram baseline counts over)."""
        return [self.ids[a:b] for a, b in self.segments[split]]

    @property
    def repeats_removed(self) -> int:
        return sum(r.length for r in self.repeats)

    @property
    def pieces(self) -> list[tuple[int, int]]:
        """Contiguous stretches of the log (after repeat removal): cut where a repeat was removed
        (windows never join two)."""
        cuts, removed = [], 0
        for repeat in self.repeats:
            cuts.append(repeat.start - removed)
            removed += repeat.length
        bounds = [0, *(c for c in cuts if 0 < c < len(self.ids)), len(self.ids)]
        return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]

    def with_segments(
        self,
        segments: dict[str, list[tuple[int, int]]],
        tag: str,
        log_segments: dict[str, list[tuple[int, int]]] | None = None,
    ) -> Dataset:
        """The same sequence and vocabulary seen through other segments (a cross-validation fold)."""
        return Dataset(
            settings=self.settings,
            vocab=self.vocab,
            ids=self.ids,
            segments=segments,
            fingerprint=f"{self.fingerprint}-{tag}",
            source=self.source,
            name_table=self.name_table,
            name_codes=self.name_codes,
            repeats=self.repeats,
            original_actions=self.original_actions,
            layout=self.layout,
            log_segments=log_segments if self.layout is not None else None,
        )

    def _split_windows(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        if split not in self._windows:
            self._windows[split] = make_windows(self.ids, self.segments[split], self.window, self.min_context)
        return self._windows[split]

    def summary(self) -> dict:
        """What metrics.json and MLflow record about the split."""
        out: dict = {
            "method": self.settings.split,
            "window": self.window,
            "actions": len(self.ids),
            "vocab_size": len(self.vocab),
            "min_count": self.settings.min_count,
            "fingerprint": self.fingerprint,
            "malformed_lines": self.malformed_lines,
            "original_actions": self.original_actions or len(self.ids),
            "repeats_removed": self.repeats_removed,
            "repeats": [r.to_dict() for r in self.repeats],
            "streams": self.streams,
        }
        if self.layout is not None:
            out["actors"] = len(self.layout.names)
        if self.settings.split == "kfold":
            out |= {"folds": self.settings.folds, "fold": self.settings.fold}
        for split in SPLITS:
            _x, y = self.windows(split)
            out[split] = {
                "segments": [list(s) for s in self.segments[split]],
                "actions": int(sum(b - a for a, b in self.segments[split])),
                "windows": len(y),
                "unknown_targets": int(np.sum(y == 0)),
            }
        return out

    def save(self, directory: Path) -> Path:
        """Write ``dataset.json``, ``vocab.json`` and ``windows.npz`` (each atomically) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"ids": self.ids.astype(np.int32)}
        if self.name_table is not None and self.name_codes is not None:
            arrays |= {"action_names": self.name_table, "action_codes": self.name_codes}
        if self.layout is not None:
            arrays |= self.layout.to_arrays()
        for split in SPLITS:
            x, y, pos = self._split_windows(split)
            arrays |= {f"x_{split}": x, f"y_{split}": y, f"pos_{split}": pos}
        with atomic_open(directory / "windows.npz", "wb") as handle:
            # numpy's stub: a **dict[str, ndarray] could also bind its `allow_pickle: bool` keyword
            np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
        self.vocab.save(directory / "vocab.json")
        write_json_atomic(
            directory / "dataset.json",
            {
                "format": FORMAT_VERSION,
                "fingerprint": self.fingerprint,
                "source": self.source,
                "settings": self.settings.model_dump(mode="json"),
                "segments": self.segments,
                "log_segments": self.log_segments,
                "repeats": [r.to_dict() for r in self.repeats],
                "original_actions": self.original_actions or len(self.ids),
                "summary": self.summary(),
            },
        )
        return directory

    @classmethod
    def load(cls, directory: Path) -> Dataset:
        """Read a dataset written by ``save``; a missing or partial directory is an InputError."""
        directory = Path(directory)
        needed = [directory / name for name in ("dataset.json", "vocab.json", "windows.npz")]
        missing = [p.name for p in needed if not p.is_file()]
        if missing:
            raise InputError(f"not a dataset directory: {directory} (missing {', '.join(missing)})")
        meta = json.loads((directory / "dataset.json").read_text())
        with np.load(directory / "windows.npz") as npz:
            arrays = {key: npz[key] for key in npz.files}
        segments = {k: [tuple(s) for s in v] for k, v in meta["segments"].items()}
        log_segments = meta.get("log_segments")
        if log_segments is not None:
            log_segments = {k: [tuple(s) for s in v] for k, v in log_segments.items()}
        dataset = cls(
            settings=DatasetSettings.model_validate(meta["settings"]),
            vocab=Vocabulary.load(directory / "vocab.json"),
            ids=arrays["ids"],
            segments=segments,
            fingerprint=meta["fingerprint"],
            source=meta.get("source", ""),
            malformed_lines=meta.get("summary", {}).get("malformed_lines", 0),
            name_table=arrays.get("action_names"),
            name_codes=arrays.get("action_codes"),
            repeats=[Repeat(r["start"], r["end"], r["source"]) for r in meta.get("repeats", [])],
            original_actions=int(meta.get("original_actions", len(arrays["ids"]))),
            layout=StreamLayout.from_arrays(arrays),
            log_segments=log_segments,
        )
        for split in SPLITS:
            dataset._windows[split] = (arrays[f"x_{split}"], arrays[f"y_{split}"], arrays[f"pos_{split}"])
        return dataset


def dataset_from_actions(
    actions: Sequence[str],
    settings: DatasetSettings,
    source: str = "",
    malformed_lines: int = 0,
    actors: Sequence[str | None] | None = None,
) -> Dataset:
    """Remove repeats (unless kept), build the vocabulary (train part only), encode, split, and check
    that every split has windows. ``actors``: who made each action (needed by ``streams="actor"``)."""
    original = len(actions)
    if settings.streams == "actor":
        if actors is None or len(actors) != original:
            raise InputError(
                "actor streams need who made each action",
                hint="pass the actions.parquet that `perfspec actions` wrote (it has usernames)",
            )
        if not any(actors):
            raise InputError(
                f"no action of {source or 'the input'} has a username: actor streams need one",
                hint="use --streams global, or actions of an audit log with usernames",
            )
    fingerprint = fingerprint_of(actions, settings, actors if settings.streams == "actor" else None)
    repeats: list[Repeat] = []
    pieces = [(0, original)]
    if not settings.keep_repeats:
        minimum = repeat_threshold(original, settings.repeat_min_actions, settings.repeat_min_fraction)
        deduplicated = remove_repeats(actions, minimum)
        actions, repeats, pieces = deduplicated.actions, deduplicated.repeats, deduplicated.pieces
        if actors is not None and repeats:
            kept = np.ones(original, dtype=bool)
            for repeat in repeats:
                kept[repeat.start : repeat.end] = False
            actors = [a for a, keep in zip(actors, kept, strict=True) if keep]
    n = len(actions)
    needed = _minimum_actions(settings)
    if n < needed:
        raise InputError(
            f"too few actions to train: {n} (need at least {needed} with window={settings.window})",
            hint="collect more actions or lower --window",
        )
    log_segments = {split: cut_at(parts, pieces) for split, parts in segments_for(n, settings).items()}
    train_actions = [a for s, e in log_segments["train"] for a in actions[s:e]]
    vocab = Vocabulary.from_counts(Counter(train_actions), settings.min_count)
    layout: StreamLayout | None = None
    segments = log_segments
    if settings.streams == "actor" and actors is not None:
        layout = StreamLayout.build([actor_class(a, settings.actor_groups) for a in actors])
        actions = [actions[i] for i in layout.order]
        segments = {split: layout.dataset_segments(parts) for split, parts in log_segments.items()}
    table = sorted(set(actions))
    code_of = {name: code for code, name in enumerate(table)}
    dataset = Dataset(
        settings=settings,
        vocab=vocab,
        ids=vocab.encode(actions),
        segments=segments,
        fingerprint=fingerprint,
        source=source,
        malformed_lines=malformed_lines,
        name_table=np.array(table, dtype=str),
        name_codes=np.fromiter((code_of[a] for a in actions), dtype=np.int32, count=n),
        repeats=repeats,
        original_actions=original,
        layout=layout,
        log_segments=log_segments if layout is not None else None,
    )
    for split in SPLITS:
        if len(dataset.windows(split)[1]) == 0:
            raise InputError(
                f"the {split} part has no window of {settings.window} actions + 1 target",
                hint="collect more actions, lower --window, or change the split fractions",
            )
    return dataset


def leakage(dataset: Dataset) -> dict[str, float]:
    """Share of validation and test windows (context + target) found verbatim in the training part."""
    x, y = dataset.windows("train")
    seen = {row.tobytes() for row in np.column_stack([x, y]).astype(np.int32)}
    shares = {}
    for split in ("val", "test"):
        xs, ys = dataset.windows(split)
        rows = np.column_stack([xs, ys]).astype(np.int32)
        shares[split] = float(np.mean([row.tobytes() in seen for row in rows])) if len(rows) else 0.0
    return shares


def _minimum_actions(settings: DatasetSettings) -> int:
    """Smallest sequence for which every part can hold one window (a cheap early check)."""
    smallest_fraction = min(settings.val_fraction, 1 - settings.train_fraction - settings.val_fraction)
    if settings.split == "kfold":
        smallest_fraction = min(smallest_fraction, 1 / settings.folds)
    return int(np.ceil((settings.window + 1) / max(smallest_fraction, 1e-9)))


def read_actions_table(path: Path) -> tuple[list[str], list[str | None]]:
    """Actions and who made them, from an ``actions.parquet`` (log order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=["action", "username"])
    except (OSError, pa.ArrowInvalid, KeyError) as error:
        raise InputError(
            f"cannot read actions and usernames from {path}: {error}",
            hint="pass the actions.parquet that `perfspec actions` wrote",
        ) from error
    actions = table.column("action").to_pylist()
    if not actions:
        raise InputError(f"no actions in {path}", hint="check the log it was built from")
    return [str(a) for a in actions], table.column("username").to_pylist()


def build_dataset(actions_file: Path, settings: DatasetSettings) -> Dataset:
    """Read an actions file (``actions.txt``, or ``actions.parquet`` with who made each action) and
    build its dataset (the library entry point ``tasks/`` call)."""
    path = Path(actions_file)
    if path.suffix == ".parquet":
        if not path.is_file():
            raise InputError(f"actions file not found: {path}", hint="run `perfspec actions` first")
        actions, actors = read_actions_table(path)
        return dataset_from_actions(actions, settings, str(path), 0, actors)
    if settings.streams == "actor":
        raise InputError(
            f"actor streams need who made each action; {path.name} has only the actions",
            hint=f"pass {path.with_name('actions.parquet')} (written by `perfspec actions` beside it)",
        )
    read = read_actions(path)
    return dataset_from_actions(read.actions, settings, str(actions_file), len(read.malformed))
