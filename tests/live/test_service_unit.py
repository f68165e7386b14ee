"""The systemd unit of ``perfspec live`` (deployments/perfspec-live.service) runs a command line that the
CLI accepts: every option in ExecStart exists, with a valid value."""

from __future__ import annotations

import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_service_unit_starts_perfspec_live_with_options_it_knows() -> None:
    import typer

    from perfspec.cli import _register_commands, app

    lines = (REPO / "deployments" / "perfspec-live.service").read_text().splitlines()
    (exec_start,) = [line.removeprefix("ExecStart=") for line in lines if line.startswith("ExecStart=")]
    words = shlex.split(exec_start)
    assert Path(words[0]).name == "perfspec" and words[1] == "live"
    _register_commands()
    group = typer.main.get_command(app)
    command = group.get_command(group.make_context("perfspec", ["live"]), "live")  # type: ignore[attr-defined]
    assert command is not None
    context = command.make_context("live", words[2:])  # raises on an unknown option or a bad value
    assert context.params["model"] == "models:/perfspec@champion" and context.params["listen"]
    assert "KillSignal=SIGTERM" in lines and "Restart=always" in lines
