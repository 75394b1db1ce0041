"""The report's statistics against independent computations."""

import math

import pytest
from scipy.stats import chi2_contingency

from services.experiments import stats


def test_wilson_interval():
    # By hand: centre (p + z²/2n) / (1 + z²/n), half-width z / (1 + z²/n) · sqrt(p(1-p)/n + z²/4n²).
    assert stats.wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert stats.wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert stats.wilson_interval(150, 1000) == pytest.approx((0.12921, 0.17347), abs=1e-5)
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("c1, n1, c0, n0", [(200, 1000, 150, 1000), (30, 400, 28, 410), (5, 50, 1, 60)])
def test_the_p_value_is_the_chi_square_test_of_the_two_by_two_table(c1, n1, c0, n0):
    expected = chi2_contingency([[c1, n1 - c1], [c0, n0 - c0]], correction=False)[1]
    assert stats.two_proportion_p_value(c1, n1, c0, n0) == pytest.approx(expected, rel=1e-9)


def test_p_value_edge_cases():
    assert stats.two_proportion_p_value(0, 10, 0, 10) == 1.0
    assert stats.two_proportion_p_value(1, 0, 1, 10) is None


def test_relative_lift_and_its_interval():
    lift, (low, high) = stats.relative_lift(200, 1000, 150, 1000)
    assert lift == pytest.approx(1 / 3)
    se = math.sqrt(1 / 200 - 1 / 1000 + 1 / 150 - 1 / 1000)
    assert (low, high) == pytest.approx((4 / 3 * math.exp(-1.959964 * se) - 1, 4 / 3 * math.exp(1.959964 * se) - 1))
    assert low < lift < high
    assert stats.relative_lift(0, 100, 10, 100) == (-1.0, None)
    assert stats.relative_lift(10, 100, 0, 100) == (None, None)


def test_sample_ratio_mismatch():
    assert stats.srm_p_value([5000, 5000], [0.5, 0.5]) == pytest.approx(1.0)
    assert stats.srm_p_value([5000, 4000], [50, 50]) < 1e-20
    assert stats.srm_p_value([900, 100], [0.9, 0.1]) == pytest.approx(1.0)
    assert stats.srm_p_value([0, 0], [0.5, 0.5]) is None


def test_sample_size():
    assert stats.sample_size(0.10, 0.10) == 14751  # the figure of the usual calculators
    assert stats.sample_size(0.10, 0.05) > 4 * stats.sample_size(0.10, 0.10) * 0.9
    assert stats.sample_size(0.15, 1 / 3) < 1500


def test_the_docs_sample_size_table_is_what_sample_size_gives():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "docs" / "experiments.md").read_text()
    table = readme.split("<!-- sample-size table", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| (\d+)% \| (.+) \|$", table, re.MULTILINE)
    assert len(rows) == 4
    for rate, cells in rows:
        sizes = [int(cell.strip().replace(",", "")) for cell in cells.split("|")]
        assert sizes == [stats.sample_size(int(rate) / 100, lift) for lift in (0.05, 0.10, 0.20)]
