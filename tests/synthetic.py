"""Small synthetic action sequences for the learning tests (shared, so every test learns the same thing)."""

from __future__ import annotations

import numpy as np

CHAINS = (
    ("create_ns", "create_sa", "create_pods", "patch_pods"),
    ("delete_pods", "delete_sa"),
    ("update_cm",),
)


def chain_actions(n: int = 600, seed: int = 0) -> list[str]:
    """A noisy protocol: fixed action chains chosen at random, so there is something to learn."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        out.extend(CHAINS[int(rng.integers(0, len(CHAINS)))])
    return out[:n]
