"""The evaluation's report: the ILD column, its definition, and the chart's trade-off panel."""

import pytest

from services.evaluation import report


def summary(ndcg, ild, **extra):
    part = {"users": 2, "precision": 0.1, "recall": 0.2, "ndcg": ndcg, "map": 0.05, "ild": ild,
            "catalog_coverage": 7, "user_coverage": 1.0}
    empty = {key: None for key in part} | {"users": 0, "catalog_coverage": 0}
    return part | {"cold": empty} | extra


# Our model at three diversity values (given out of order), two baselines, one without an ILD.
RESULT = {
    "dataset": "tiny",
    "k": 5,
    "protocol": "p",
    "models": {
        "hybrid": summary(0.30, 0.40, diversity=0.0),
        "hybrid (diversity 1)": summary(0.20, 0.70, diversity=1.0),
        "hybrid (diversity 0.5)": summary(0.25, 0.60, diversity=0.5),
        "popularity": summary(0.10, 0.80),
        "nothing": summary(0.0, None),
    },
}


def test_table_and_markdown_show_the_ild_column_and_define_it():
    table = report.table(RESULT)
    assert "ILD@5" in table
    assert table.splitlines()[2].split()[-3] == "0.4000"  # hybrid's ILD, before items and users
    markdown = report.markdown(RESULT)
    assert "| model | P@5 | R@5 | NDCG@5 | MAP@5 | ILD@5 | items | users |" in markdown
    assert "1 - |A & B| / |A | B|" in markdown


def test_the_hybrid_against_ease_is_one_line_with_its_intervals():
    result = RESULT | {"hybrid_minus_ease": {"ndcg": {"mean": 0.01, "low": -0.002, "high": 0.022}, "recall": None}}
    line = report.comparison_line(result)
    assert line == "hybrid − ease, per user (mean, 95 % interval): NDCG@5 +0.0100 (-0.0020 to +0.0220)"
    assert line + "." in report.markdown(result)
    assert report.comparison_line(RESULT) == "hybrid − ease: too few users to compare"


def test_chart_plots_ndcg_against_ild_one_point_per_diversity_and_the_others_as_references():
    from matplotlib import pyplot as plt

    fig = report.figure(RESULT)
    try:
        bars, trade = fig.axes
        assert [b.get_height() for b in bars.patches] == pytest.approx([0.30, 0.20, 0.25, 0.10, 0.0])
        (line,) = trade.get_lines()
        assert list(line.get_xdata()) == pytest.approx([0.40, 0.60, 0.70])  # diversity 0, 0.5, 1
        assert list(line.get_ydata()) == pytest.approx([0.30, 0.25, 0.20])
        (others,) = trade.collections
        assert others.get_offsets().tolist() == [[0.80, 0.10]]  # popularity; "nothing" has no ILD
        assert trade.get_xlabel().startswith("ILD@5")
    finally:
        plt.close(fig)
