"""Who made an action: a username, grouped into the actor class whose stream it belongs to.

Why grouping: some requesters are many copies of one role (every kubelet is ``system:node:<host>``); a
stream per node would split one behaviour into many short streams. A username matching one of the
``groups`` (shell-style patterns, first match wins) belongs to the class named by that pattern; any
other username (service accounts included) is its own class. One rule, used by the dataset, the
predictor and the live engine alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from perfspec.settings import DEFAULT_ACTOR_GROUPS

__all__ = ["DEFAULT_ACTOR_GROUPS", "NO_ACTOR", "actor_class"]

#: The class of an action whose username is missing (the seed's token files carry none).
NO_ACTOR = "(none)"


def actor_class(username: str | None, groups: Sequence[str] = DEFAULT_ACTOR_GROUPS) -> str:
    """The stream ``username`` belongs to: the first matching group pattern, else the name itself."""
    if not username:
        return NO_ACTOR
    for pattern in groups:
        if fnmatchcase(username, pattern):
            return pattern
    return username
