"""Model configurations: a family, its settings and a name a person can read in a table or the MLflow UI.

Why names like ``gru-128x1-e64-d0.5``: a sweep's child runs are compared side by side; the name
says what differs (family, units x layers, embedding size, dropout) without opening the parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfspec.errors import InputError
from perfspec.learn.families import FAMILIES
from perfspec.learn.network import NEURAL_FAMILIES
from perfspec.settings import TrainSettings


@dataclass(frozen=True)
class ModelConfig:
    """One model to fit: ``params`` are ``TrainSettings`` fields (neural), ``order`` (n-gram), or the
    neural config a mixture interpolates with the n-gram."""

    name: str
    family: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def is_neural(self) -> bool:
        return self.family in NEURAL_FAMILIES

    def train_settings(self) -> TrainSettings:
        return TrainSettings.model_validate(self.settings)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "params": self.settings}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """The inverse of ``to_dict`` (how Prefect tasks receive a config)."""
        return cls(str(data["name"]), str(data["family"]), tuple(sorted(dict(data["params"]).items())))


def _number(value: float) -> str:
    return f"{value:g}"


def neural_name(settings: TrainSettings) -> str:
    if settings.family == "transformer":
        shape = f"e{settings.embedding_dim}h{settings.heads}b{settings.blocks}"
    else:
        shape = f"{settings.lstm_units}x{settings.lstm_layers}-e{settings.embedding_dim}"
    return f"{settings.family}-{shape}-d{_number(settings.dropout)}"


def neural_config(settings: TrainSettings, name: str | None = None) -> ModelConfig:
    """``name`` defaults to the readable ``neural_name``; ``perfspec train`` names its one neural model by
    its family (``lstm``), as the metrics contract says."""
    return ModelConfig(
        name or neural_name(settings), settings.family, tuple(sorted(settings.model_dump().items()))
    )


def ngram_name(streams: str) -> str:
    """The CV-chosen n-gram's name in a run: ``ngram`` on the global stream, ``ngram_actor`` (the
    per-actor n-gram) on actor streams. It is the reference every model is paired with."""
    return "ngram" if streams == "global" else f"ngram_{streams}"


def ngram_config(order: int) -> ModelConfig:
    return ModelConfig(f"ngram-{order}", "ngram", (("order", order),))


MOST_FREQUENT = ModelConfig("most_frequent", "most_frequent")


def mixture_config(neural: ModelConfig) -> ModelConfig:
    """``mixture`` beside a neural model named by its family (``perfspec train``), else
    ``mixture-<neural name>`` (a sweep, where several configs of a family compete)."""
    name = "mixture" if neural.name == neural.family else f"mixture-{neural.name}"
    return ModelConfig(name, "mixture", (("neural", neural.name),))


def label(config: ModelConfig) -> str:
    """What a person reads for a model: the readable settings of a neural one, else its name."""
    return neural_name(config.train_settings()) if config.is_neural else config.name


# A small grid per family for `perfspec sweep` (2 CPU cores: each config trains in well under a minute)
DEFAULT_GRID: dict[str, list[dict[str, Any]]] = {
    "lstm": [
        {"embedding_dim": 64, "lstm_units": 128, "dropout": 0.5},
        {"embedding_dim": 32, "lstm_units": 64, "dropout": 0.3},
    ],
    "gru": [
        {"embedding_dim": 64, "lstm_units": 128, "dropout": 0.5},
        {"embedding_dim": 32, "lstm_units": 64, "dropout": 0.3},
    ],
    "transformer": [
        {"embedding_dim": 64, "heads": 2, "blocks": 1, "dropout": 0.3},
        {"embedding_dim": 32, "heads": 2, "blocks": 2, "dropout": 0.3},
    ],
}


def sweep_configs(
    base: TrainSettings, families: Iterable[str], grid: Mapping[str, list[dict[str, Any]]] | None = None
) -> list[ModelConfig]:
    """One config per grid entry of each neural family (``base`` fills what an entry leaves out).

    ``ngram``, ``most_frequent`` and ``mixture`` need no grid: the n-gram order is chosen by CV, and
    the mixture interpolates the best neural config with the n-gram.
    """
    grid = DEFAULT_GRID if grid is None else grid
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise InputError(f"unknown model families: {', '.join(unknown)}", hint=f"use {', '.join(FAMILIES)}")
    configs: list[ModelConfig] = []
    for family in families:
        if family not in NEURAL_FAMILIES:
            continue
        for entry in grid.get(family) or [{}]:
            try:
                settings = base.model_validate({**base.model_dump(), **entry, "family": family})
            except ValueError as error:
                raise InputError(f"bad grid entry for {family}: {entry} ({error})") from None
            config = neural_config(settings)
            if config.name not in {c.name for c in configs}:
                configs.append(config)
    return configs


def load_grid(path: Path) -> dict[str, list[dict[str, Any]]]:
    """A grid file (YAML or JSON): ``{family: [ {setting: value, ...}, ... ]}``."""
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"cannot read the grid file {path}: {error}") from None
    if not isinstance(loaded, dict) or not all(
        isinstance(v, list) and all(isinstance(e, dict) for e in v) for v in loaded.values()
    ):
        raise InputError(
            f"{path} is not a grid",
            hint="expected {family: [{setting: value, ...}, ...]}, e.g. lstm: [{dropout: 0.5}]",
        )
    return loaded
