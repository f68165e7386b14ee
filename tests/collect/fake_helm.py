#!/usr/bin/env python3
"""A stand-in ``helm`` for tests: answers the subcommands pyhelm3 issues, with helm 3's flags and output.

It keeps releases in ``$FAKE_HELM_DIR/releases.json`` (so status/list/uninstall agree with installs),
appends every invocation (argv without the executable, stdin) to ``$FAKE_HELM_DIR/calls.jsonl``, and reads
optional behaviour from ``$FAKE_HELM_DIR/config.json``:

    {"version": "v3.14.2",
     "fail": [{"command": "upgrade", "match": "redis", "times": 2,
               "stderr": "Error: INSTALLATION FAILED: ...", "leave": "failed"}],
     "sleep": {"upgrade": 2.0}}

``match`` is a substring of the release name; ``times`` (default: always) counts matching calls;
``leave`` is the release status left behind by a failing install (as real helm leaves ``failed``).
Unknown flags are refused like helm does ("Error: unknown flag"), so tests catch commands real helm
would reject.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import sys
import time
from pathlib import Path

GLOBAL_VALUE = {"--kubeconfig", "--kube-context", "--kube-apiserver", "--kube-token", "--namespace", "-n"}
GLOBAL_BOOL = {"--kube-insecure-skip-tls-verify", "--debug"}
FLAGS: dict[str, tuple[set[str], set[str]]] = {
    # subcommand: (flags taking a value, boolean flags)
    "version": ({"--template"}, {"--short"}),
    "upgrade": (
        {"--history-max", "--output", "--timeout", "--values", "--repo", "--version", "--description"},
        {
            "--install",
            "--create-namespace",
            "--wait",
            "--wait-for-jobs",
            "--atomic",
            "--cleanup-on-fail",
            "--devel",
            "--dry-run",
            "--force",
            "--no-hooks",
            "--reset-values",
            "--reuse-values",
            "--skip-crds",
            "--take-ownership",
        },
    ),
    "uninstall": ({"--timeout"}, {"--wait", "--dry-run", "--keep-history", "--no-hooks"}),
    "status": ({"--output", "--revision"}, set()),
    "list": (
        {"--max", "--output"},
        {
            "--all",
            "--all-namespaces",
            "--deployed",
            "--failed",
            "--pending",
            "--superseded",
            "--uninstalled",
            "--uninstalling",
            "--date",
            "--reverse",
        },
    ),
    "history": ({"--output", "--max"}, set()),
    "rollback": (
        {"--history-max", "--timeout"},
        {
            "--cleanup-on-fail",
            "--wait",
            "--wait-for-jobs",
            "--dry-run",
            "--force",
            "--no-hooks",
            "--recreate-pods",
        },
    ),
    "show": ({"--repo", "--version"}, {"--devel"}),
}


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.exit(code)


def parse(argv: list[str]) -> tuple[str, list[str], dict[str, str], set[str]]:
    if not argv:
        fail("Error: a subcommand is required")
    sub, rest = argv[0], argv[1:]
    if sub not in FLAGS:
        fail(f'Error: unknown command "{sub}" for "helm"')
    value_flags, bool_flags = FLAGS[sub]
    positional, values, bools = [], {}, set()
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg.startswith("-") and arg != "-":
            name, _, inline = arg.partition("=")
            if name in value_flags or name in GLOBAL_VALUE:
                if inline:
                    values[name] = inline
                else:
                    if i + 1 >= len(rest):
                        fail(f"Error: flag needs an argument: {name}")
                    values[name] = rest[i + 1]
                    i += 1
            elif name in bool_flags or name in GLOBAL_BOOL:
                bools.add(name)
            else:
                fail(f"Error: unknown flag: {name}")
        else:
            positional.append(arg)
        i += 1
    if "-n" in values:
        values["--namespace"] = values.pop("-n")
    return sub, positional, values, bools


class State:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "releases.json"
        self.lock = open(root / ".lock", "a+")  # noqa: SIM115 - held for the process lifetime
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {"releases": {}, "hits": {}}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


def release_json(rel: dict) -> dict:
    return {
        "name": rel["name"],
        "namespace": rel["namespace"],
        "version": rel["revision"],
        "info": {
            "first_deployed": rel["first_deployed"],
            "last_deployed": rel["last_deployed"],
            "deleted": "",
            "description": rel["description"],
            "status": rel["status"],
            "notes": f"Thank you for installing {rel['chart']}.",
        },
        "chart": {
            "metadata": {
                "apiVersion": "v2",
                "name": rel["chart"],
                "version": rel["chart_version"],
                "appVersion": "1.0.0",
                "description": "fake chart",
            },
            "values": {},
        },
        "config": {},
        "manifest": f"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {rel['name']}\n"
        f"  namespace: {rel['namespace']}\n",
    }


def chart_of(ref: str, repo: str | None, version: str | None) -> tuple[str, str]:
    if repo:
        if "/" in ref:
            fail(f"Error: chart name {ref!r} must not contain a repo prefix when --repo is set")
        return ref, version or "1.0.0"
    path = Path(ref)
    if (path / "Chart.yaml").is_file():
        meta = {}
        for line in (path / "Chart.yaml").read_text().splitlines():
            key, _, value = line.partition(":")
            meta[key.strip()] = value.strip().strip('"')
        return meta.get("name", path.name), meta.get("version", "0.1.0")
    fail(
        "Error: INSTALLATION FAILED: non-absolute URLs should be in form of repo_name/path_to_chart, "
        f"got: {ref}"
    )
    raise AssertionError


def main() -> None:
    root = Path(os.environ["FAKE_HELM_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    config = json.loads((root / "config.json").read_text()) if (root / "config.json").exists() else {}
    argv = sys.argv[1:]
    stdin = ""
    sub = argv[0] if argv else ""
    if "--values" in argv and argv[argv.index("--values") + 1] == "-":
        stdin = sys.stdin.read()
    with open(root / "calls.jsonl", "a") as log:
        log.write(json.dumps({"argv": argv, "stdin": stdin, "pid": os.getpid(), "at": now()}) + "\n")
    delay = float((config.get("sleep") or {}).get(sub, 0))
    if delay:
        time.sleep(delay)
    sub, pos, values, bools = parse(argv)
    if sub == "version":
        sys.stdout.write(config.get("version", "v3.14.2"))
        return
    state = State(root)
    releases: dict = state.data["releases"]
    namespace = values.get("--namespace", "default")

    def check_failure(release: str) -> dict | None:
        for number, rule in enumerate(config.get("fail", [])):
            if rule.get("command") != sub or rule.get("match", "") not in release:
                continue
            key = str(number)
            hits = state.data["hits"].get(key, 0)
            if rule.get("times") is not None and hits >= rule["times"]:
                continue
            state.data["hits"][key] = hits + 1
            return rule
        return None

    if sub == "upgrade":
        if len(pos) != 2:
            fail(f'Error: "helm upgrade" requires 2 arguments, got {len(pos)}')
        name, ref = pos
        key = f"{namespace}/{name}"
        chart, chart_version = chart_of(ref, values.get("--repo"), values.get("--version"))
        if key not in releases and "--install" not in bools:
            fail(f'Error: UPGRADE FAILED: "{name}" has no deployed releases')
        rule = check_failure(name)
        if rule:
            if rule.get("leave"):
                releases[key] = {
                    "name": name,
                    "namespace": namespace,
                    "revision": 1,
                    "status": rule["leave"],
                    "chart": chart,
                    "chart_version": chart_version,
                    "first_deployed": now(),
                    "last_deployed": now(),
                    "description": "Release failed",
                }
            state.save()
            fail(rule.get("stderr", "Error: INSTALLATION FAILED: fake failure"))
        previous = releases.get(key)
        revision = previous["revision"] + 1 if previous else 1
        releases[key] = {
            "name": name,
            "namespace": namespace,
            "revision": revision,
            "status": "deployed",
            "chart": chart,
            "chart_version": chart_version,
            "first_deployed": previous["first_deployed"] if previous else now(),
            "last_deployed": now(),
            "description": "Upgrade complete" if previous else "Install complete",
        }
        state.save()
        sys.stdout.write(json.dumps(release_json(releases[key])))
    elif sub == "uninstall":
        name = pos[0]
        key = f"{namespace}/{name}"
        rule = check_failure(name)
        if rule:
            state.save()
            fail(rule.get("stderr", "Error: uninstallation completed with 1 error(s): fake failure"))
        if key not in releases:
            fail(f"Error: uninstall: Release not loaded: {name}: release: not found")
        del releases[key]
        state.save()
        sys.stdout.write(f'release "{name}" uninstalled\n')
    elif sub == "status":
        key = f"{namespace}/{pos[0]}"
        if key not in releases:
            fail("Error: release: not found")
        sys.stdout.write(json.dumps(release_json(releases[key])))
    elif sub == "rollback":
        key = f"{namespace}/{pos[0]}"
        if key not in releases:
            fail("Error: release: not found")
        releases[key]["status"] = "deployed"
        releases[key]["revision"] += 1
        state.save()
        sys.stdout.write("Rollback was a success! Happy Helming!\n")
    elif sub == "history":
        key = f"{namespace}/{pos[0]}"
        if key not in releases:
            fail("Error: release: not found")
        rel = releases[key]
        sys.stdout.write(
            json.dumps(
                [
                    {
                        "revision": rel["revision"],
                        "updated": rel["last_deployed"],
                        "status": rel["status"],
                        "chart": f"{rel['chart']}-{rel['chart_version']}",
                        "app_version": "1.0.0",
                        "description": rel["description"],
                    }
                ]
            )
        )
    elif sub == "list":
        wanted = {
            s
            for s, flag in (
                ("deployed", "--deployed"),
                ("failed", "--failed"),
                ("pending-install", "--pending"),
                ("pending-upgrade", "--pending"),
                ("pending-rollback", "--pending"),
                ("uninstalling", "--uninstalling"),
            )
            if flag in bools
        } or {"deployed", "failed", "pending-install", "pending-upgrade"}
        rows = [
            {
                "name": r["name"],
                "namespace": r["namespace"],
                "revision": str(r["revision"]),
                "updated": r["last_deployed"],
                "status": r["status"],
                "chart": f"{r['chart']}-{r['chart_version']}",
                "app_version": "1.0.0",
            }
            for r in releases.values()
            if r["status"] in wanted and ("--all-namespaces" in bools or r["namespace"] == namespace)
        ]
        sys.stdout.write(json.dumps(rows))
    elif sub == "show":
        if not pos or pos[0] != "chart" or len(pos) != 2:
            fail("Error: only `helm show chart CHART` is faked")
        chart, chart_version = chart_of(pos[1], values.get("--repo"), values.get("--version"))
        sys.stdout.write(
            f"apiVersion: v2\nname: {chart}\nversion: {chart_version}\nappVersion: 1.0.0\n"
            "description: fake chart\ntype: application\n"
        )


if __name__ == "__main__":
    main()
