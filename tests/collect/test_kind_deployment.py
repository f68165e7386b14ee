"""deployments/kind: the policy and templates are valid and fully rendered (checked without docker)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.collect.conftest import REPO_ROOT

KIND = REPO_ROOT / "deployments" / "kind"


def test_policy_is_metadata_without_request_received() -> None:
    policy = yaml.safe_load((KIND / "audit-policy.yaml").read_text())
    assert policy["apiVersion"] == "audit.k8s.io/v1" and policy["kind"] == "Policy"
    assert policy["omitStages"] == ["RequestReceived"]
    assert policy["rules"][-1]["level"] == "Metadata" and "resources" not in policy["rules"][-1]
    assert all(r["level"] in ("None", "Metadata") for r in policy["rules"])  # never bodies


def test_templates_render_to_valid_configs(tmp_path: Path) -> None:
    rendered = {}
    for name, subs in (
        ("kind-config.yaml.tmpl", {"@WORK@": str(tmp_path)}),
        (
            "webhook-kubeconfig.yaml.tmpl",
            {"@RECEIVER_URL@": "http://172.18.0.1:9444/audit", "@TOKEN@": "abc"},
        ),
    ):
        text = (KIND / name).read_text()
        for key, value in subs.items():
            text = text.replace(key, value)
        assert "@" not in text.replace("kind.x-k8s.io", "")
        rendered[name] = yaml.safe_load(text)
    kind = rendered["kind-config.yaml.tmpl"]
    node = kind["nodes"][0]
    patch = yaml.safe_load(node["kubeadmConfigPatches"][0])
    args = patch["apiServer"]["extraArgs"]
    assert args["audit-webhook-config-file"].startswith("/etc/kubernetes/audit/")
    assert args["audit-policy-file"] == "/etc/kubernetes/audit/audit-policy.yaml"
    mounted = {m["containerPath"] for m in node["extraMounts"]}
    assert {v["hostPath"] for v in patch["apiServer"]["extraVolumes"]} <= mounted
    webhook = rendered["webhook-kubeconfig.yaml.tmpl"]
    assert webhook["clusters"][0]["cluster"]["server"].endswith(":9444/audit")
    assert webhook["users"][0]["user"]["token"] == "abc"


def test_up_script_is_valid_bash_and_fails_clearly_without_tools(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(KIND / "up.sh")]).returncode == 0
    result = subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(KIND / "up.sh")],
        capture_output=True,
        text=True,
        env={"PATH": "/nonexistent", "HOME": str(tmp_path)},
        timeout=30,
    )
    assert result.returncode == 3 and "not found on PATH" in result.stderr


def test_up_script_writes_the_webhook_kubeconfig_owner_only(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {
        "docker": 'case "$*" in *"-f"*) echo "172.18.0.1 fc00:f853::1 ";; esac; exit 0',
        "kind": "exit 0",
        "kubectl": "exit 0",
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    work = tmp_path / "work"
    (work / "audit").mkdir(parents=True)
    stale = work / "audit" / "webhook-kubeconfig.yaml"
    stale.write_text("old")
    stale.chmod(0o644)  # an earlier, world-readable render
    result = subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(KIND / "up.sh")],
        capture_output=True,
        text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "PERFSPEC_KIND_DIR": str(work)},
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    rendered = work / "audit" / "webhook-kubeconfig.yaml"
    assert rendered.stat().st_mode & 0o777 == 0o600
    token = (work / "receiver-token").read_text()
    assert yaml.safe_load(rendered.read_text())["users"][0]["user"]["token"] == token
    assert (work / "receiver-token").stat().st_mode & 0o777 == 0o600
