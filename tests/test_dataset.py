"""Dataset: reading actions, vocabulary, windows, and a split without leakage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perfspec.errors import InputError
from perfspec.learn.dataset import Dataset, build_dataset, dataset_from_actions, load_actions, read_actions
from perfspec.learn.vocab import UNK
from perfspec.settings import DatasetSettings

LETTERS = [f"create_{c}" for c in "abcdefgh"]


def _sequence(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [LETTERS[i] for i in rng.integers(0, len(LETTERS), n)]


def _write(tmp_path: Path, lines: list[str], name: str = "actions.txt") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_load_actions_ignores_blank_lines_and_sets_aside_malformed(tmp_path: Path) -> None:
    path = _write(tmp_path, ["create_pods", "", "  ", "delete_pods", "not an action", "patch_nodes"])
    read = read_actions(path)
    assert read.actions == ["create_pods", "delete_pods", "patch_nodes"]
    assert read.malformed == [(5, "not an action")]
    assert load_actions(path) == read.actions


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file_is_an_input_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.txt"
    path.write_text(content)
    with pytest.raises(InputError, match="no actions"):
        load_actions(path)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_actions(tmp_path / "nope.txt")


def test_one_action_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="too few actions"):
        build_dataset(_write(tmp_path, ["create_pods"]), DatasetSettings())


def test_window_too_large_for_a_part_is_an_input_error() -> None:
    with pytest.raises(InputError, match="window"):
        dataset_from_actions(_sequence(150), DatasetSettings(window=20))


def _assert_no_leakage(dataset: Dataset) -> None:
    n, w = len(dataset.ids), dataset.window
    covered = np.zeros(n, dtype=int)
    for split in ("train", "val", "test"):
        for start, end in dataset.segments[split]:
            covered[start:end] += 1
    assert (covered == 1).all(), "splits must be disjoint and cover the sequence"
    for split in ("train", "val", "test"):
        x, y = dataset.windows(split)
        positions = dataset.positions(split)
        assert len(x) == len(y) == len(positions) > 0
        for row, pos in enumerate(positions):
            segment = [s for s in dataset.segments[split] if s[0] <= pos < s[1]]
            assert segment, f"{split} target at {pos} outside its split"
            assert pos - w >= segment[0][0], f"{split} window ending at {pos} crosses a boundary"
            np.testing.assert_array_equal(x[row], dataset.ids[pos - w : pos])
            assert y[row] == dataset.ids[pos]


def test_chronological_split_is_ordered_and_no_window_crosses_a_boundary() -> None:
    dataset = dataset_from_actions(_sequence(1000), DatasetSettings(window=5))
    _assert_no_leakage(dataset)
    (train,), (val,), (test,) = (dataset.segments[s] for s in ("train", "val", "test"))
    assert train == (0, 800) and val == (800, 900) and test == (900, 1000)
    assert dataset.positions("train").max() < dataset.positions("val").min()
    assert dataset.positions("val").max() < dataset.positions("test").min()
    # exactly W targets are lost at the start of each part, none more
    assert [len(dataset.windows(s)[1]) for s in ("train", "val", "test")] == [795, 95, 95]


@pytest.mark.parametrize("fold", range(5))
def test_kfold_blocks_are_contiguous_and_leak_free(fold: int) -> None:
    dataset = dataset_from_actions(
        _sequence(2000), DatasetSettings(window=4, split="kfold", folds=5, fold=fold)
    )
    _assert_no_leakage(dataset)
    assert dataset.segments["test"] == [(fold * 400, fold * 400 + 400)]


def test_kfold_test_blocks_partition_the_sequence() -> None:
    tests = [
        dataset_from_actions(_sequence(1000), DatasetSettings(split="kfold", folds=4, fold=f)).segments[
            "test"
        ][0]
        for f in range(4)
    ]
    assert tests == [(0, 250), (250, 500), (500, 750), (750, 1000)]


def test_vocab_is_built_on_train_only_with_unk_at_zero() -> None:
    actions = _sequence(1000)
    actions[950] = "delete_neverseen"  # only in the test part
    actions[10] = "patch_rare"  # once in train
    dataset = dataset_from_actions(actions, DatasetSettings(window=3, min_count=2))
    assert dataset.vocab.tokens[0] == UNK
    assert "delete_neverseen" not in dataset.vocab
    assert "patch_rare" not in dataset.vocab  # below min_count
    assert dataset.ids[950] == 0 and dataset.ids[10] == 0
    assert dataset.vocab.counts[0] == 1  # the rare training action is counted under <unk>
    assert dataset.summary()["test"]["unknown_targets"] == 1
    # the names themselves are kept (re-scoring another model must see the real action)
    assert dataset.names(949, 952) == actions[949:952] and dataset.names(10, 11) == ["patch_rare"]


def test_fingerprint_depends_on_actions_and_split_settings() -> None:
    actions = _sequence(500)
    base = dataset_from_actions(actions, DatasetSettings()).fingerprint
    assert dataset_from_actions(list(actions), DatasetSettings()).fingerprint == base
    assert dataset_from_actions(actions, DatasetSettings(window=5)).fingerprint != base
    assert dataset_from_actions(actions, DatasetSettings(train_fraction=0.7)).fingerprint != base
    changed = [*actions[:-1], "delete_other"]
    assert dataset_from_actions(changed, DatasetSettings()).fingerprint != base


def test_save_load_round_trip(tmp_path: Path) -> None:
    dataset = build_dataset(_write(tmp_path, _sequence(600)), DatasetSettings(window=6))
    directory = dataset.save(tmp_path / "ds")
    assert sorted(p.name for p in directory.iterdir()) == ["dataset.json", "vocab.json", "windows.npz"]
    loaded = Dataset.load(directory)
    assert loaded.fingerprint == dataset.fingerprint
    assert loaded.vocab == dataset.vocab
    assert loaded.segments == dataset.segments
    for split in ("train", "val", "test"):
        for a, b in zip(loaded.windows(split), dataset.windows(split), strict=True):
            np.testing.assert_array_equal(a, b)
    assert loaded.has_names and loaded.names(0, len(loaded.ids)) == dataset.names(0, len(dataset.ids))


def test_load_of_a_partial_directory_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text("{}")
    with pytest.raises(InputError, match="missing"):
        Dataset.load(tmp_path)


def test_paper_corpus_summary() -> None:
    """The bundled sample is the paper corpus itself (byte-identical to ../shared's copy)."""
    sample = Path(__file__).resolve().parent.parent / "sample" / "events-dataset.txt"
    dataset = build_dataset(sample, DatasetSettings(keep_repeats=True))
    summary = dataset.summary()
    assert summary["actions"] == 21_642 and summary["repeats_removed"] == 0
    assert summary["vocab_size"] == 199  # 198 actions, all seen in the first 80%, + <unk>
    assert summary["train"]["windows"] + summary["val"]["windows"] + summary["test"]["windows"] == 21_642 - 30
