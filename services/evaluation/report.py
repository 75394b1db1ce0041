"""The evaluation's outputs: a text table, metrics.json, report.md and an NDCG bar chart."""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = [
    ("precision", "P@{k}"),
    ("recall", "R@{k}"),
    ("ndcg", "NDCG@{k}"),
    ("map", "MAP@{k}"),
    ("catalog_coverage", "items"),
    ("user_coverage", "users"),
]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"


def rows(result: dict, cold: bool = False) -> list[list[str]]:
    """One row per model: name then the COLUMNS values (of the cold slice when `cold`)."""
    out = []
    for name, summary in result["models"].items():
        part = summary["cold"] if cold else summary
        out.append([name] + [_cell(part[key]) for key, _ in COLUMNS])
    return out


def headers(k: int) -> list[str]:
    """Column titles for cutoff k."""
    return ["model"] + [title.format(k=k) for _, title in COLUMNS]


def table(result: dict) -> str:
    """Plain-text tables (all users, then the cold slice) for the terminal."""
    k = result["k"]
    first = next(iter(result["models"].values()))
    parts = []
    for cold, title in ((False, f"all users ({first['users']})"), (True, f"cold slice ({first['cold']['users']})")):
        lines = [headers(k)] + rows(result, cold)
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        text = [title]
        for line in lines:
            text.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))))
        parts.append("\n".join(text))
    return "\n\n".join(parts)


def markdown(result: dict) -> str:
    """report.md: the protocol and the two tables."""
    k = result["k"]
    first = next(iter(result["models"].values()))
    lines = [f"# Offline evaluation on {result['dataset']} (K = {k})", "", f"Protocol: {result['protocol']}.", ""]
    for cold, title in ((False, f"All evaluated users ({first['users']})"), (True, f"Cold slice ({first['cold']['users']} users)")):
        lines += [f"## {title}", "", "| " + " | ".join(headers(k)) + " |", "|" + " --- |" * (len(COLUMNS) + 1)]
        lines += ["| " + " | ".join(row) + " |" for row in rows(result, cold)]
        lines.append("")
    lines += [f"![NDCG@{k} per model](ndcg.png)", ""]
    return "\n".join(lines)


def write(result: dict, out_dir: Path) -> list[Path]:
    """Write metrics.json, report.md and ndcg.png into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "metrics.json", out_dir / "report.md", out_dir / "ndcg.png"]
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    paths[1].write_text(markdown(result))
    chart(result, paths[2])
    return paths


def chart(result: dict, path: Path) -> None:
    """A bar chart of NDCG@K per model."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot as plt

    names = list(result["models"])
    values = [result["models"][n]["ndcg"] or 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    bars = ax.bar(names, values, color=["#2b6cb0" if n == "hybrid" else "#a0aec0" for n in names])
    ax.bar_label(bars, fmt="%.4f", fontsize=8)
    ax.set_ylabel(f"NDCG@{result['k']}")
    ax.set_title(f"{result['dataset']}: NDCG@{result['k']} per model")
    ax.tick_params(axis="x", labelsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)
