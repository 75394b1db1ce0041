"""The evaluation's outputs: a text table, metrics.json, report.md and a chart (ndcg.png)."""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = [
    ("precision", "P@{k}"),
    ("recall", "R@{k}"),
    ("ndcg", "NDCG@{k}"),
    ("map", "MAP@{k}"),
    ("ild", "ILD@{k}"),
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


def refresh_line(result: dict) -> str:
    """What the refresh chose on its validation slice (of the train ratings only), in one line."""
    model = result.get("refresh") or {}
    settings, validation = model.get("settings") or {}, model.get("validation")
    if not settings:
        return "the refresh recorded no settings"
    tuned = ", ".join(settings.get("tuned", ())) or "nothing"
    chosen = (f"EASE_LAMBDA={settings['ease_lambda']:g} NEIGHBOURS_K={settings['neighbours_k']} "
              f"CONTENT_WEIGHT={settings['content_weight']:g} COLLABORATIVE_WEIGHT={settings['collaborative_weight']:g} "
              f"HISTORY_WEIGHTING={settings['history_weighting']}")
    measured = ("no validation slice" if not validation else
                f"validation NDCG@10 {validation['ndcg']:.4f} on {validation['users']} users, {validation['trials']} trials")
    return f"our model's settings, chosen by its refresh on the train ratings (tuned: {tuned}): {chosen}; {measured}"


def comparison_line(result: dict) -> str:
    """hybrid − ease per user with 95 % intervals (metrics.paired_difference), in one line."""
    k, parts = result["k"], []
    for name, title in (("ndcg", "NDCG"), ("recall", "recall")):
        d = (result.get("hybrid_minus_ease") or {}).get(name)
        if d is not None:
            parts.append(f"{title}@{k} {d['mean']:+.4f} ({d['low']:+.4f} to {d['high']:+.4f})")
    if not parts:
        return "hybrid − ease: too few users to compare"
    return "hybrid − ease, per user (mean, 95 % interval): " + ", ".join(parts)


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
    lines = [f"# Offline evaluation on {result['dataset']} (K = {k})", "", f"Protocol: {result['protocol']}.", "",
             refresh_line(result) + ".", ""]
    for cold, title in ((False, f"All evaluated users ({first['users']})"), (True, f"Cold slice ({first['cold']['users']} users)")):
        lines += [f"## {title}", "", "| " + " | ".join(headers(k)) + " |", "|" + " --- |" * (len(COLUMNS) + 1)]
        lines += ["| " + " | ".join(row) + " |" for row in rows(result, cold)]
        lines.append("")
        if not cold:
            lines += [comparison_line(result) + ".", ""]
    lines += [
        f"ILD@{k} (intra-list diversity): per user, the mean over the pairs of their top {k} of the genre "
        "distance 1 - |A & B| / |A | B| (A, B the two movies' genre sets; two movies without genres are "
        "at distance 1), averaged over the users with at least 2 movies. `hybrid (diversity d)`: our "
        "model with the `diversity` parameter d, re-ranking each list for genre variety.",
        "",
        f"![NDCG@{k} per model, and NDCG@{k} against ILD@{k}](ndcg.png)",
        "",
    ]
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
    """Write `figure(result)` as a PNG."""
    fig = figure(result)
    fig.savefig(path, dpi=120)
    from matplotlib import pyplot as plt  # figure() chose the backend

    plt.close(fig)


def figure(result: dict):
    """Two panels: NDCG@K per model (bars), and NDCG@K against ILD@K: our model's rows with a
    `diversity` as one line, in diversity order, each point labelled with it, and the other
    models as reference points (a model without an ILD value is left out of that panel)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot as plt

    k, models = result["k"], result["models"]
    names = list(models)
    ours = sorted((n for n in names if "diversity" in models[n]), key=lambda n: models[n]["diversity"])
    fig, (bars_ax, trade_ax) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    values = [models[n]["ndcg"] or 0.0 for n in names]
    bars = bars_ax.bar(names, values, color=["#2b6cb0" if n in ours else "#a0aec0" for n in names])
    bars_ax.bar_label(bars, fmt="%.4f", fontsize=7)
    bars_ax.set_ylabel(f"NDCG@{k}")
    bars_ax.set_title(f"{result['dataset']}: NDCG@{k} per model")
    bars_ax.tick_params(axis="x", labelsize=7, labelrotation=30)
    for label in bars_ax.get_xticklabels():
        label.set_horizontalalignment("right")

    def has_both(n: str) -> bool:
        return models[n]["ild"] is not None and models[n]["ndcg"] is not None

    line = [n for n in ours if has_both(n)]
    trade_ax.plot(
        [models[n]["ild"] for n in line], [models[n]["ndcg"] for n in line],
        marker="o", color="#2b6cb0", label="hybrid, by diversity",
    )
    for n in line:
        trade_ax.annotate(f"{models[n]['diversity']:g}", (models[n]["ild"], models[n]["ndcg"]),
                          textcoords="offset points", xytext=(4, 4), fontsize=8, color="#2b6cb0")
    others = [n for n in names if n not in ours and has_both(n)]
    trade_ax.scatter([models[n]["ild"] for n in others], [models[n]["ndcg"] for n in others],
                     color="#a0aec0", label="other models")
    for n in others:
        trade_ax.annotate(n, (models[n]["ild"], models[n]["ndcg"]),
                          textcoords="offset points", xytext=(4, -10), fontsize=7, color="#4a5568")
    trade_ax.margins(0.15)  # room for the labels
    trade_ax.set_xlabel(f"ILD@{k} (mean pairwise genre distance)")
    trade_ax.set_ylabel(f"NDCG@{k}")
    trade_ax.set_title("accuracy against genre variety")
    trade_ax.legend(fontsize=8, loc="best")
    return fig
