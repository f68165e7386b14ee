"""Campaign spec: which charts to install, in which order, how often, with which timeouts and pauses.

Why a separate frozen object: the dry run, the runner and the Prefect flow all work from the same
value, and its JSON form goes into ``manifest.json`` so a campaign records exactly what was asked.
Two input formats: the seed's Artifact Hub answer (``helm-charts.json``: ``{"packages": [...]}``) and a
small YAML (or JSON) list of ``{name, repo, version}`` (optionally a mapping with ``charts:`` plus
campaign fields such as ``skip`` or ``repetitions``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from perfspec.errors import InputError
from perfspec.settings import CampaignSettings, CollectSettings

_REPO_NAME_RE = re.compile(r"[^a-z0-9-]+")


class ChartRef(BaseModel):
    """One chart: ``name`` in a repository URL (``repo``) at ``version``, or a local chart directory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
    repo: str | None = Field(None, description="repository URL (http/https/oci) or local chart directory")
    repo_name: str | None = None
    version: str | None = None

    @property
    def key(self) -> str:
        """``repo_name/name``: tells apart the charts that share a name (four do in the seed)."""
        return f"{self.repo_name}/{self.name}" if self.repo_name else self.name

    @property
    def is_local(self) -> bool:
        return bool(self.repo) and "://" not in str(self.repo)


class CampaignSpec(CampaignSettings):
    """Everything a campaign needs, resolved from the charts file + CollectSettings + overrides: the
    campaign fields (``settings.CampaignSettings``, one definition) plus the charts."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    source: str
    source_sha256: str
    charts: tuple[ChartRef, ...]
    skipped: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        """Hash of what decides the plan (charts, order, names); a resumed campaign must have the same
        one, while timeouts, pauses and retries may change between runs."""
        payload = self.model_dump(
            mode="json", include={"name", "charts", "mode", "shuffle_seed", "repetitions", "namespace_prefix"}
        )
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _repo_slug(text: str) -> str:
    return _REPO_NAME_RE.sub("-", text.lower()).strip("-") or "repo"


def _from_artifact_hub(packages: list[Any], path: Path) -> list[ChartRef]:
    charts = []
    for index, package in enumerate(packages):
        try:
            repository = package["repository"]
            charts.append(
                ChartRef(
                    name=package["name"],
                    repo=repository["url"],
                    repo_name=repository.get("name") or _repo_slug(repository["url"]),
                    version=package.get("version"),
                )
            )
        except (KeyError, TypeError, ValidationError) as error:
            raise InputError(f"{path}: package #{index} is not a chart entry ({error})") from error
    return charts


def _from_list(entries: list[Any], path: Path) -> list[ChartRef]:
    charts = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError(
                f"{path}: chart #{index} must be a mapping with name/repo/version, got {entry!r}"
            )
        entry = {k: (str(v) if k == "version" and v is not None else v) for k, v in entry.items()}
        repo = entry.get("repo")
        if isinstance(repo, str) and repo and "://" not in repo:
            local = Path(repo)
            entry["repo"] = str(local if local.is_absolute() else (path.parent / local).resolve())
        try:
            charts.append(ChartRef.model_validate(entry))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InputError(f"{path}: chart #{index}: {where}: {first['msg']}") from error
    return charts


def read_charts(path: Path) -> tuple[list[ChartRef], dict[str, Any]]:
    """Charts from ``path`` and any campaign fields the file itself sets (YAML/JSON mapping form)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"charts file not found: {path}", hint="pass --charts sample/helm-charts.json")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise InputError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}"
        ) from error
    fields: dict[str, Any] = {}
    if isinstance(data, dict) and isinstance(data.get("packages"), list):
        charts = _from_artifact_hub(data["packages"], path)
    elif isinstance(data, dict) and isinstance(data.get("charts"), list):
        fields = {k: v for k, v in data.items() if k != "charts"}
        charts = _from_list(data["charts"], path)
    elif isinstance(data, list):
        charts = _from_list(data, path)
    else:
        raise InputError(
            f"{path}: expected Artifact Hub JSON ({{'packages': [...]}}), a list of charts, "
            "or a mapping with 'charts:'"
        )
    if not charts:
        raise InputError(f"{path}: lists no charts")
    return charts, fields


def load_campaign(path: Path, settings: CollectSettings, **overrides: Any) -> CampaignSpec:
    """The campaign for ``path``: settings, then fields set in the file, then ``overrides`` (CLI flags).

    ``overrides`` may also hold ``name`` (default: the file's stem). Skip entries match a chart's name
    or its ``repo_name/name``; ``limit`` keeps the first N charts after skip; charts are shuffled in the
    plan (not here), so the spec keeps the listed order.
    """
    path = Path(path)
    charts, file_fields = read_charts(path)
    name = overrides.pop("name", None) or file_fields.pop("name", None) or _repo_slug(path.stem)
    merged: dict[str, Any] = settings.model_dump()
    for source in (file_fields, overrides):
        unknown = set(source) - set(merged)
        if unknown:
            raise InputError(f"unknown campaign field(s): {', '.join(sorted(unknown))}")
        merged.update({k: v for k, v in source.items() if v is not None})
    try:
        CollectSettings.model_validate(merged)
    except ValidationError as error:
        first = error.errors()[0]
        raise InputError(
            f"invalid campaign setting {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from error
    skip = {str(s) for s in merged.get("skip") or ()}
    unmatched = skip - {c.name for c in charts} - {c.key for c in charts}
    if unmatched:
        raise InputError(f"skip list names charts not in {path}: {', '.join(sorted(unmatched))}")
    kept = [c for c in charts if c.name not in skip and c.key not in skip]
    if merged.get("limit"):
        kept = kept[: int(merged["limit"])]
    if not kept:
        raise InputError(f"{path}: every chart is skipped; nothing to do")
    try:
        return CampaignSpec(
            name=str(name),
            source=str(path),
            source_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            charts=tuple(kept),
            skipped=tuple(sorted(skip)),
            **{field: merged[field] for field in CampaignSettings.model_fields},
        )
    except ValidationError as error:
        first = error.errors()[0]
        raise InputError(
            f"invalid campaign setting {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from error
