"""The statistics of an experiment report: intervals and tests on conversion rates.

Conversion rates are proportions of users, so every variant is a binomial sample: the Wilson
score interval for each rate, the pooled two-proportion z-test for a variant against the
control, the Katz log interval for their ratio (the relative lift), a chi-square test of the
users per variant against the configured shares (sample ratio mismatch), and the classic
sample-size formula for planning.
"""

from __future__ import annotations

import math
from typing import Sequence

from scipy import stats

Z95 = float(stats.norm.ppf(0.975))


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of successes / trials; (0, 1) without trials."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_p_value(c1: int, n1: int, c0: int, n0: int) -> float | None:
    """Two-sided p-value of the pooled z-test that c1/n1 and c0/n0 are equal; None without users."""
    if n1 == 0 or n0 == 0:
        return None
    pooled = (c1 + c0) / (n1 + n0)
    if pooled in (0.0, 1.0):
        return 1.0
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    z = (c1 / n1 - c0 / n0) / se
    return float(2 * stats.norm.sf(abs(z)))


def relative_lift(c1: int, n1: int, c0: int, n0: int, z: float = Z95) -> tuple[float | None, tuple[float, float] | None]:
    """(c1/n1) / (c0/n0) - 1 and its interval from the log risk ratio (Katz); None where undefined
    (no users, or no conversions in the control; the interval also when the variant has none)."""
    if n1 == 0 or n0 == 0 or c0 == 0:
        return None, None
    lift = (c1 / n1) / (c0 / n0) - 1
    if c1 == 0:
        return lift, None
    se = math.sqrt(1 / c1 - 1 / n1 + 1 / c0 - 1 / n0)
    log_ratio = math.log(lift + 1)
    return lift, (math.exp(log_ratio - z * se) - 1, math.exp(log_ratio + z * se) - 1)


def srm_p_value(observed: Sequence[int], shares: Sequence[float]) -> float | None:
    """p-value of the chi-square test of users per variant against the shares; None without users
    or with a single variant."""
    total = sum(observed)
    if total == 0 or len(observed) < 2:
        return None
    expected = [total * share / sum(shares) for share in shares]
    return float(stats.chisquare(list(observed), expected).pvalue)


def sample_size(base_rate: float, relative_lift: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users per variant to detect `relative_lift` over `base_rate` with a two-sided test at `alpha`
    with probability `power`."""
    p1, p2 = base_rate, base_rate * (1 + relative_lift)
    mean = (p1 + p2) / 2
    z_alpha, z_power = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    n = (z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_power * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2
    return math.ceil(n / (p2 - p1) ** 2)
