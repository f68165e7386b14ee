"""Which audit events become actions, and how an action is spelled.

``paper`` is fixed on purpose: it is the rule that produced the PerfSPEC seed corpus
(``events-dataset.txt``), so models trained on it stay comparable with the paper. Every other
choice is ``custom`` and spelled out in settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfspec.errors import InputError
from perfspec.settings import ActionsSettings

READ_VERBS: tuple[str, ...] = ("get", "list", "watch")
PAPER_DROP_RESOURCES: tuple[str, ...] = ("events", "leases", "replicationcontrollers")


@dataclass(frozen=True)
class ActionRule:
    """Drop events whose verb or resource is listed; the token is ``verb_resource[/subresource]``."""

    name: str
    drop_verbs: tuple[str, ...]
    drop_resources: tuple[str, ...]
    include_subresource: bool

    def token(self, verb: str, resource: str | None, subresource: str | None) -> str:
        """The action token of one event (the vectorised path in ``build_actions`` spells it the same)."""
        base = f"{verb}_{resource or ''}"
        return f"{base}/{subresource}" if self.include_subresource and subresource else base


PAPER = ActionRule("paper", READ_VERBS, PAPER_DROP_RESOURCES, include_subresource=False)


def resolve(settings: ActionsSettings) -> ActionRule:
    """The rule for ``settings``. ``paper`` refuses custom fields rather than silently ignore them."""
    if settings.preset == "paper":
        custom = (
            tuple(settings.drop_verbs) != PAPER.drop_verbs
            or tuple(settings.drop_resources) != PAPER.drop_resources
            or settings.include_subresource
            or settings.keep_reads
        )
        if custom:
            raise InputError(
                "the 'paper' preset is fixed (drop get/list/watch and events/leases/replicationcontrollers)",
                hint="use preset 'custom' (--preset custom) to change drop lists, subresources or reads",
            )
        return PAPER
    drop_verbs = tuple(v for v in settings.drop_verbs if not (settings.keep_reads and v in READ_VERBS))
    return ActionRule("custom", drop_verbs, tuple(settings.drop_resources), settings.include_subresource)
