"""``predictor.npz``: any trained model as plain arrays, servable without TensorFlow.

Why a bundle: importing TensorFlow and reading a ``.keras`` file take ~10 s and ~700 MB, while every
family's answer is NumPy (``perfspec.learn.families``). A bundle holds the vocabulary, the model's
family and meta (JSON) and its arrays: uncompressed, no pickle, entries in a fixed order with a fixed
timestamp, so the same model always gives the same bytes. Version 1 bundles (LSTM only, written before
the families existed) are still read.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from perfspec.fileio import atomic_path
from perfspec.learn.families import Scorer, scorer_from_arrays
from perfspec.learn.vocab import UNK, Vocabulary

BUNDLE_NAME = "predictor.npz"  # in a run dir, a model dir, and beside MLmodel in the logged model
BUNDLE_FORMAT = "perfspec-predictor"
BUNDLE_VERSION = 2  # bump on any change a reader of the previous version would misread
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class BundleError(ValueError):
    """A ``predictor.npz`` that this code cannot use (corrupt, other format, newer version)."""


def write_bundle(scorer: Scorer, vocab: Vocabulary, target: Path, info: dict[str, Any] | None = None) -> Path:
    """Write ``scorer`` + ``vocab`` atomically; ``info`` (name, run, config) travels with it."""
    if scorer.classes != len(vocab):
        raise BundleError(f"model outputs {scorer.classes} classes but the vocabulary has {len(vocab)}")
    model_meta, model_arrays = scorer.to_arrays()
    meta = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "window": scorer.window,
        "vocab_size": len(vocab),
        "unknown": UNK,
        "model": model_meta,
        "info": info or {},
    }
    arrays: dict[str, np.ndarray] = {
        "meta": np.array([json.dumps(meta, sort_keys=True)]),
        "vocab_tokens": np.array(vocab.tokens, dtype=np.str_),
        "vocab_counts": np.array(vocab.counts, dtype=np.int64),
    }
    arrays |= {f"model.{name}": array for name, array in model_arrays.items()}
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, suffix=".npz") as tmp, open(tmp, "wb") as handle:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
                entry = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
                entry.external_attr = 0o644 << 16
                archive.writestr(entry, buffer.getvalue())
        handle.flush()
        os.fsync(handle.fileno())
    return target


def read_bundle(path: Path) -> tuple[Scorer, Vocabulary, dict[str, Any]]:
    """Scorer, vocabulary and info of a ``predictor.npz``; ``BundleError`` if it cannot be used."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = json.loads(str(arrays.pop("meta").reshape(-1)[0]))
        if meta.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"not a {BUNDLE_FORMAT} bundle")
        vocab = Vocabulary(
            tuple(str(t) for t in arrays.pop("vocab_tokens")),
            tuple(int(c) for c in arrays.pop("vocab_counts")),
        )
        if meta.get("version") == 1:
            model_meta, model_arrays = _version1(meta, arrays)
        elif meta.get("version") == BUNDLE_VERSION:
            model_meta = meta["model"]
            model_arrays = {k.removeprefix("model."): v for k, v in arrays.items() if k.startswith("model.")}
        else:
            raise BundleError(f"bundle version {meta.get('version')}, this code reads 1 and {BUNDLE_VERSION}")
        scorer = scorer_from_arrays(model_meta, model_arrays)
    except BundleError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, zipfile.BadZipFile) as error:
        raise BundleError(f"unreadable bundle: {error}") from error
    if scorer.classes != len(vocab):
        raise BundleError(f"model outputs {scorer.classes} classes but the vocabulary has {len(vocab)}")
    return scorer, vocab, dict(meta.get("info") or {})


def _version1(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A version-1 (LSTM-only) bundle: same array names, its meta in the LSTM family's form."""
    model_meta = {"family": "lstm", "window": meta["window"], "lstm_units": meta["lstm_units"]}
    if "vocab_size" in meta:
        model_meta["vocab_size"] = meta["vocab_size"]
    return model_meta, arrays
