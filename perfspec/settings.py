"""One typed, frozen settings object for the whole project.

Why one object: every layer (library, Prefect tasks, CLI) reads the same defaults, and users override
them the same way everywhere: environment variables ``PERFSPEC_<SECTION>__<FIELD>`` (e.g.
``PERFSPEC_TRAIN__EPOCHS=5``) or CLI flags, which build a copy with ``settings.model_copy(update=...)``.
Each section belongs to one layer; add fields to your own section only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from perfspec.errors import InputError


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PathsSettings(_Section):
    """The project data dir and its layout (see ARCHITECTURE.md, "Data-dir layout")."""

    data_dir: Path = Path("perfspec-data")

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def clean_dir(self) -> Path:
        return self.data_dir / "clean"

    @property
    def actions_dir(self) -> Path:
        return self.data_dir / "actions"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"

    @property
    def prefect_home(self) -> Path:
        return self.data_dir / "prefect"


class CleanSettings(_Section):
    """Raw audit events -> events.parquet."""

    batch_rows: int = Field(16_384, gt=0, description="rows buffered before a Parquet row group is written")
    max_line_bytes: int = Field(8 * 1024 * 1024, gt=0, description="longer lines are rejected, not parsed")
    reject_raw_max_chars: int = Field(4_096, gt=0, description="raw text kept per reject in rejects.jsonl")
    max_document_bytes: int = Field(
        256 * 1024 * 1024, gt=0, description="largest pretty-printed Event/EventList document read whole"
    )
    dedupe: bool = Field(True, description="merge a request's stages into one row (latest stage kept)")
    workers: int = Field(
        0,
        ge=0,
        description="processes parsing large JSON-lines files and encoding the output (0 = one per CPU)",
    )
    parallel_min_bytes: int = Field(64 * 1024 * 1024, gt=0, description="smaller files are read in-process")
    native: bool = Field(
        True,
        description="scan JSON lines with the native scanner when it is built (false: the pure-Python "
        "path; same outputs, several times slower)",
    )
    parts_compression: Literal["auto", "lz4", "none"] = Field(
        "auto",
        description="pass 1's temporary parts in the output folder: none (about 0.4x the JSON read, ~10 % "
        "faster), lz4 (about 0.14x), auto (none when the disk has room for it, else lz4)",
    )


#: The PerfSPEC paper's rule (``perfspec.actions.presets.PAPER``): these verbs and resources are dropped.
PAPER_DROP_VERBS: tuple[str, ...] = ("get", "list", "watch")
PAPER_DROP_RESOURCES: tuple[str, ...] = ("events", "leases", "replicationcontrollers")
#: Actor classes: every node's kubelet is one actor; service accounts stay apart (perfspec.actions.actors).
DEFAULT_ACTOR_GROUPS: tuple[str, ...] = ("system:node:*",)


class ActionsSettings(_Section):
    """events.parquet -> action tokens. ``paper`` reproduces the seed's events-dataset.txt exactly."""

    preset: Literal["paper", "custom"] = "paper"
    drop_verbs: tuple[str, ...] = PAPER_DROP_VERBS
    drop_resources: tuple[str, ...] = PAPER_DROP_RESOURCES
    include_subresource: bool = False
    keep_reads: bool = False


class DatasetSettings(_Section):
    """Action sequence -> windows (W past actions -> next) split chronologically."""

    window: int = Field(10, gt=0)
    train_fraction: float = Field(0.8, gt=0, lt=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    min_count: int = Field(1, ge=1, description="rarer actions map to the unknown token")
    split: Literal["chronological", "kfold"] = "chronological"
    folds: int = Field(5, ge=2)
    fold: int = Field(0, ge=0, description="which contiguous block is the test part with split=kfold")
    seed: int = 42
    streams: Literal["global", "actor"] = Field(
        "global",
        description="global: one stream of all actions; actor: one stream per requester (needs "
        "actions.parquet with usernames), a window is the actor's own last W actions",
    )
    actor_groups: tuple[str, ...] = Field(
        DEFAULT_ACTOR_GROUPS,
        description="usernames matching one of these shell patterns form one actor (first match wins)",
    )
    keep_repeats: bool = Field(
        False, description="keep verbatim repeats of long earlier spans (removed by default: they leak)"
    )
    repeat_min_actions: int = Field(500, gt=0, description="a repeated span this long is a copy")
    repeat_min_fraction: float = Field(
        0.05, gt=0, le=1, description="... or this fraction of the sequence, whichever is shorter"
    )


class TrainSettings(_Section):
    """The neural next-action model (Keras 3 on TensorFlow): LSTM, GRU or a small causal Transformer."""

    family: Literal["lstm", "gru", "transformer"] = Field(
        "lstm",
        description="the network these settings build (`perfspec train` fits selection.train_families; "
        "a sweep its grid)",
    )
    # Defaults measured on the de-duplicated paper corpus (10,821 actions; the earlier 21,642-action
    # tuning measured memorisation of a second copy): small and regularised, since the network overfits
    # at once; 64x1/e32/d0.3 matched 128x1/e64/d0.5 on blocked 5-fold CV for LSTM and GRU at half the
    # cost (bench/RESULTS.md, "sweep").
    embedding_dim: int = Field(32, gt=0)
    lstm_units: int = Field(64, gt=0, description="units per recurrent layer (LSTM and GRU)")
    lstm_layers: int = Field(1, ge=1, description="stacked recurrent layers (LSTM and GRU)")
    heads: int = Field(2, ge=1, description="Transformer attention heads (embedding_dim must divide)")
    blocks: int = Field(1, ge=1, description="Transformer blocks")
    dropout: float = Field(0.3, ge=0, lt=1)
    learning_rate: float = Field(5e-3, gt=0)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    lr_floor: float = Field(0.02, ge=0, le=1, description="cosine schedule ends at this fraction of the rate")
    batch_size: int = Field(64, gt=0)
    epochs: int = Field(30, gt=0)
    patience: int = Field(8, ge=1, description="early stopping on validation loss")
    checkpoint_every: int = Field(1, ge=1, description="checkpoint every N epochs")
    keep_checkpoints: int = Field(3, ge=1, description="periodic checkpoints kept (the best is kept too)")
    seed: int = 42


class SelectionSettings(_Section):
    """Model selection: blocked cross-validation, the target metric, the champion rule, sweeps."""

    cv_folds: int = Field(5, ge=0, description="blocked CV folds over the first 90% (0 = no CV)")
    target_k: int = Field(5, ge=1, le=20, description="the champion is the best CV mean top-k for this k")
    train_families: tuple[Literal["lstm", "gru", "transformer"], ...] = Field(
        ("lstm", "gru"), min_length=1, description="neural families `perfspec train` fits (--family)"
    )
    ngram_orders: tuple[int, ...] = Field((1, 2, 3, 4, 5, 6), description="n-gram orders CV chooses from")
    mixture: bool = Field(True, description="also score the neural model interpolated with the n-gram")
    promotion_standard_errors: float = Field(
        2.0, ge=0, description="a challenger's paired gain over @champion must exceed this many SEs"
    )
    promotion_blocks: int = Field(10, ge=2, description="contiguous test blocks for the paired comparison")
    sweep_families: tuple[str, ...] = Field(
        ("ngram", "lstm", "gru", "transformer", "mixture"), description="families a sweep tries"
    )
    sweep_concurrency: int = Field(1, ge=1, description="configurations a sweep trains at once")
    nightly_sweep: bool = Field(False, description="the nightly retraining runs a small sweep")
    actor_streams: bool = Field(
        True,
        description="the pipeline also trains per-actor streams (registered model <name>-actor) when "
        "the actions have usernames",
    )


class MlflowSettings(_Section):
    """MLflow tracking and registry. ``tracking_uri=None`` -> MLFLOW_TRACKING_URI, else local SQLite."""

    tracking_uri: str | None = None
    experiment: str = "perfspec"
    registered_model: str = "perfspec"
    champion_alias: str = "champion"
    promotion_margin: float = Field(0.0, ge=0, description="a challenger must beat champion top-1 by this")

    def model_for(self, streams: str) -> str:
        """The registered model of a stream kind: ``perfspec`` (global) and ``perfspec-actor``; each
        has its own ``@champion``, since their predictions answer different questions."""
        return self.registered_model if streams == "global" else f"{self.registered_model}-{streams}"


class PrefectSettings(_Section):
    """Orchestration defaults (schedules, retries)."""

    nightly_cron: str = "0 2 * * *"
    timezone: str = "UTC"
    task_retries: int = Field(3, ge=0)
    retry_delay_seconds: float = Field(2.0, ge=0, description="first retry delay; doubles each retry")
    retry_jitter_factor: float = Field(0.5, ge=0, description="random extra delay, as a fraction of it")
    task_timeout_seconds: float = Field(3600, gt=0, description="limit for clean/actions/dataset/eval tasks")
    train_timeout_seconds: float = Field(6 * 3600, gt=0, description="limit for the training task")
    collect_timeout_seconds: float = Field(6 * 3600, gt=0, description="limit for one collection campaign")
    sample_epochs: int = Field(20, gt=0, description="epochs when `pipeline` runs on the bundled sample")
    work_pool: str = "perfspec"
    startup_timeout_seconds: int = Field(60, gt=0, description="ephemeral Prefect server cold start")
    task_runner: Literal["sequential", "dask"] = Field(
        "sequential",
        description="where clean's pass 1 runs: here, or on Dask (a local cluster, or dask_address)",
    )
    dask_address: str | None = Field(None, description="an existing Dask scheduler, e.g. tcp://host:8786")
    dask_workers: int = Field(2, ge=1, description="worker processes of the local Dask cluster")
    alert_webhook_url: str | None = Field(
        None,
        description="a failed or crashed pipeline/collect run posts a JSON message here (off when unset)",
    )
    alert_timeout_seconds: float = Field(5.0, gt=0, description="how long an alert may take to send")


class CampaignSettings(_Section):
    """How a Helm campaign runs: what a campaign spec records (``collect.spec.CampaignSpec`` adds its
    charts) and what ``CollectSettings`` sets by default."""

    mode: Literal["batch", "pairwise"] = Field(
        "batch",
        description="batch: install every chart, then uninstall each (the paper); pairwise: one by one",
    )
    shuffle_seed: int | None = None
    repetitions: int = Field(1, ge=1)
    install_timeout_seconds: int = Field(45, gt=0)
    uninstall_timeout_seconds: int = Field(120, gt=0)
    pause_after_install_seconds: float = Field(10.0, ge=0)
    pause_after_uninstall_seconds: float = Field(6.0, ge=0)
    install_retries: int = Field(0, ge=0)
    retry_delay_seconds: float = Field(5.0, ge=0, description="pause before retrying a failed install")
    helm_grace_seconds: float = Field(
        60.0, ge=0, description="extra wall time a helm call gets beyond its --timeout before it is killed"
    )
    namespace_prefix: str = Field("ps", pattern=r"^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?$")
    wait: bool = Field(False, description="helm --wait (the paper did not wait)")
    delete_leftover_namespaces: bool = Field(
        True, description="before starting, delete namespaces left by earlier campaigns (our prefix only)"
    )
    delete_namespaces_after_uninstall: bool = Field(
        False, description="delete each release namespace after its uninstall (adds events the paper lacks)"
    )


class CollectSettings(CampaignSettings):
    """Helm campaigns on a test cluster: the campaign defaults, plus where helm and the cluster are."""

    helm: str = "helm"
    kubeconfig: Path | None = None
    skip: tuple[str, ...] = Field((), description="chart names (or repo/name) left out of the campaign")
    limit: int | None = Field(None, gt=0, description="only the first N charts (after skip and shuffle)")
    cluster_request_timeout_seconds: float = Field(10.0, gt=0)


class ReceiverSettings(_Section):
    """Audit webhook receiver."""

    host: str = "127.0.0.1"
    port: int = Field(9444, ge=0, lt=65536, description="0 picks a free port")
    path: str = Field(
        "/audit", pattern=r"^/", description="the only path that takes POSTs (the webhook kubeconfig's URL)"
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        description="larger bodies get 413 (API server batches: <= 400 Metadata events, ~1 MiB)",
    )
    max_batch_items: int = Field(
        4000, ge=1, description="items per body; more get 413 (the API server sends <= 400 by default)"
    )
    max_rejects_per_request: int = Field(
        100, ge=0, description="rejected items recorded per request (one write); the rest are counted"
    )
    rotate_bytes: int = Field(256 * 1024 * 1024, gt=0)
    token: str | None = Field(None, repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    drop_bodies: bool = Field(
        True, description="strip requestObject/responseObject before writing (secrets; unused downstream)"
    )
    request_timeout_seconds: float = Field(
        30.0, gt=0, description="deadline for one request's headers and body, and for an idle connection"
    )
    max_concurrent_requests: int = Field(
        2, ge=1, description="bodies processed at once (parsing, writing); others wait, then get 503"
    )
    max_buffered_bytes: int = Field(
        64 * 1024 * 1024,
        gt=0,
        description="bytes of bodies being received at once (one client: half); beyond, 503 + Retry-After",
    )
    min_body_bytes_per_second: int = Field(
        64 * 1024,
        ge=0,
        description="a body whose next 64 KiB takes over 2 s + 64 KiB at this rate is cut off; 0: off",
    )
    max_connections: int = Field(
        64,
        ge=1,
        description="open connections (one thread each); at the cap the longest-waiting incomplete one "
        "is closed for a new one, else the new one is reset",
    )
    max_connections_per_client: int = Field(
        32, ge=1, description="open connections from one address; more are reset"
    )
    drain_seconds: float = Field(
        6.0, ge=0, description="collect --receive: wait this long after the last step for the last batch"
    )


class LiveSettings(_Section):
    """``perfspec live``: the online predictor beside the audit intake (perfspec/live)."""

    top: int = Field(
        5, ge=1, le=10, description="predictions per record; an action outside them is unexpected"
    )
    http: str = Field(
        "127.0.0.1:9445",
        description="HOST:PORT of the predictions/metrics server in --follow mode (--listen serves them "
        "on the receiver's own port); port 0 picks a free one",
    )
    poll_seconds: float = Field(
        30.0, gt=0, description="how often a models:/NAME@ALIAS model asks the registry for a new version"
    )
    queue_events: int = Field(
        100_000,
        ge=1,
        description="actions waiting for the engine thread; beyond, new ones skip prediction (counted; "
        "the events themselves are persisted all the same)",
    )
    inline_actions: int = Field(
        8,
        ge=0,
        description="actions one submit (an event, a webhook batch) predicts in the calling thread when the "
        "engine is idle; the rest go to the engine thread. Inline there is no thread hand-off (~1 ms at p99 "
        "on 2 cores), but the receiver answers only after them (~0.1 ms an action with an n-gram); 0: always "
        "queue",
    )
    output_buffer: int = Field(
        10_000, ge=1, description="records buffered per output; a slow output loses the oldest (counted)"
    )
    max_streams: int = Field(10_000, ge=1, description="streams (actors) kept; the least recently used go")
    remember_ids: int = Field(
        100_000, ge=1, description="recent audit IDs remembered so that a request's later stages count once"
    )
    rotate_bytes: int = Field(64 * 1024 * 1024, gt=0, description="predictions-NNNNNN.jsonl rotate past this")
    keep_files: int = Field(8, ge=1, description="rotated predictions files kept (oldest deleted)")
    follow_interval_seconds: float = Field(0.2, gt=0, description="--follow: how often files are polled")
    checkpoint_seconds: float = Field(
        5.0, gt=0, description="how often the cumulative counters are saved (they continue after a restart)"
    )


class Settings(BaseSettings):
    """Everything configurable, with defaults that run offline on one machine."""

    model_config = SettingsConfigDict(
        env_prefix="PERFSPEC_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    paths: PathsSettings = PathsSettings()
    clean: CleanSettings = CleanSettings()
    actions: ActionsSettings = ActionsSettings()
    dataset: DatasetSettings = DatasetSettings()
    train: TrainSettings = TrainSettings()
    selection: SelectionSettings = SelectionSettings()
    mlflow: MlflowSettings = MlflowSettings()
    prefect: PrefectSettings = PrefectSettings()
    collect: CollectSettings = CollectSettings()
    receiver: ReceiverSettings = ReceiverSettings()
    live: LiveSettings = LiveSettings()

    def with_section(self, section: str, **updates: object) -> Settings:
        """A copy with some fields of one section replaced (how CLI flags override env/defaults)."""
        current: BaseModel = getattr(self, section)
        clean_updates = {k: v for k, v in updates.items() if v is not None}
        try:
            new_section = current.model_validate({**current.model_dump(), **clean_updates})
        except ValidationError as error:
            raise _invalid(error, f"--{{field}} (settings {section}.{{field}})") from None
        return self.model_copy(update={section: new_section})

    @property
    def mlflow_tracking_uri(self) -> str:
        """Explicit setting, else ``MLFLOW_TRACKING_URI``, else a SQLite file under the data dir."""
        return self.resolve_mlflow_tracking_uri(os.environ)

    def resolve_mlflow_tracking_uri(self, environ: Mapping[str, str]) -> str:
        """The same rule against a given environment (the runtime decides before touching os.environ)."""
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        if env_uri := environ.get("MLFLOW_TRACKING_URI"):
            return env_uri
        db = (self.paths.mlflow_dir / "mlflow.db").resolve()
        return f"sqlite:///{db}"

    @property
    def mlflow_artifact_location(self) -> str:
        """Where a new experiment stores artifacts when the tracking store is the embedded SQLite file."""
        return (self.paths.mlflow_dir / "artifacts").resolve().as_uri()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from defaults + environment, read once per process."""
    try:
        return Settings()
    except ValidationError as error:
        raise _invalid(error, "PERFSPEC_{FIELD}") from None


def _invalid(error: ValidationError, where: str) -> InputError:
    """A pydantic error as one line naming the flag or env variable to fix (no traceback for users)."""
    problems = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        field = loc[-1].replace("_", "-") if loc else "?"
        name = where.format(field=field, FIELD="__".join(loc).upper())
        problems.append(f"{name}: {item['msg']} (got {item.get('input')!r})")
    return InputError("invalid setting: " + "; ".join(problems), hint="see `perfspec COMMAND --help`")
