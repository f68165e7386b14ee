"""Which audit events become actions, and how an action is spelled.

``paper`` is fixed on purpose: it is the rule that produced the PerfSPEC seed corpus
(``events-dataset.txt``), so models trained on it stay comparable with the paper. Every other
choice is ``custom`` and spelled out in settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from perfspec.errors import InputError
from perfspec.settings import PAPER_DROP_RESOURCES, PAPER_DROP_VERBS, ActionsSettings

READ_VERBS = PAPER_DROP_VERBS
#: An action is spelled ``<verb>_<resource>`` (the seed corpus' tokens), plus ``/<subresource>`` on demand.
VERB_SEPARATOR = "_"
SUBRESOURCE_SEPARATOR = "/"


def spell(verb: str, resource: str | None) -> str:
    """The token of a verb and resource (the vectorised path in ``build_actions`` spells it the same)."""
    return f"{verb}{VERB_SEPARATOR}{resource or ''}"


def split(token: str) -> tuple[str, str | None, str | None]:
    """(verb, resource, subresource) of a token: the inverse of the spelling."""
    verb, _, rest = token.partition(VERB_SEPARATOR)
    resource, _, subresource = rest.partition(SUBRESOURCE_SEPARATOR)
    return verb, resource or None, subresource or None


@dataclass(frozen=True)
class ActionRule:
    """Drop events whose verb or resource is listed; the token is ``verb_resource[/subresource]``."""

    name: str
    drop_verbs: tuple[str, ...]
    drop_resources: tuple[str, ...]
    include_subresource: bool

    def action_of(self, verb: str | None, resource: str | None, subresource: str | None = None) -> str | None:
        """The token of one event, or None when the rule drops it: what ``build_actions`` does to a
        table, one event at a time (the live predictor's intake; a test holds the two equal). An event
        without a verb is dropped; one without a resource (a non-resource URL) is ``<verb>_``."""
        if verb is None or verb in self.drop_verbs or resource in self.drop_resources:
            return None
        token = spell(verb, resource)
        if self.include_subresource and subresource:
            return f"{token}{SUBRESOURCE_SEPARATOR}{subresource}"
        return token


PAPER = ActionRule("paper", PAPER_DROP_VERBS, PAPER_DROP_RESOURCES, include_subresource=False)


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
                f"the 'paper' preset is fixed (drop {'/'.join(PAPER.drop_verbs)} and "
                f"{'/'.join(PAPER.drop_resources)})",
                hint="use preset 'custom' (--preset custom) to change drop lists, subresources or reads",
            )
        return PAPER
    drop_verbs = tuple(v for v in settings.drop_verbs if not (settings.keep_reads and v in READ_VERBS))
    return ActionRule("custom", drop_verbs, tuple(settings.drop_resources), settings.include_subresource)
