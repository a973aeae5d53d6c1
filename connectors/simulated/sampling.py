"""What the simulated processes share: seeded generators, Poisson counts, whole ticks.

Every random draw comes from a generator made by `seeded_rng` (see the package doc on
determinism), and every price leaves the float world through `to_ticks` or as a whole
number of ticks.
"""

from __future__ import annotations

import math
import random
from decimal import ROUND_HALF_EVEN, Decimal

SECONDS_PER_YEAR = 365 * 86_400
SECONDS_PER_DAY = 86_400


def to_ticks(price: Decimal, unit: Decimal) -> int:
    return int((price / unit).to_integral_value(ROUND_HALF_EVEN))


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        # Normal approximation: exact enough for a trade count, and O(1).
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    threshold = math.exp(-lam)
    count = 0
    product = rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def seeded_rng(seed: int, symbol: str, stream: str) -> random.Random:
    # Reproducible simulation, not secrecy: a seeded Mersenne Twister is what we want.
    return random.Random(f"cival-sim/{seed}/{symbol}/{stream}")  # noqa: S311
