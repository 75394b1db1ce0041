"""The experiment report: exposed users, attributed conversions and their statistics, per variant.

A user is exposed when a page of the experiment was shown to them (ml.impressions). They
convert when they liked or watched a media that was on such a page, after it was shown and
within the window (services/experiments/attribution.py). Every variant is compared with the
first one, the control: relative lift of the conversion rate with its 95 % interval and a
two-sided p-value; the users per variant are checked against the configured shares (sample
ratio mismatch, `srm_p_value`).
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator
from uuid import UUID

import numpy as np

from database.records import Experiment
from services.experiments import stats
from services.experiments.attribution import attributed

DEFAULT_WINDOW_HOURS = 24.0
# Below this p-value the split does not match the shares: something (a cache, a filter, a crash of
# one variant) drops users of one variant, and the comparison is not to be trusted.
SRM_THRESHOLD = 0.001
NIL = np.zeros(1, dtype="V16")[0]  # the media id of a page that showed none


@dataclass(frozen=True)
class Shown:
    """An experiment's impressions, one entry per media shown on a page."""

    user: np.ndarray  # V16
    variant: np.ndarray  # int, position in the experiment's variants
    shown_at: np.ndarray  # int64 microseconds
    page: np.ndarray  # int64 page number
    media: np.ndarray  # V16 (NIL for an empty page)

    @classmethod
    def of(cls, chunks: Iterable[np.ndarray]) -> "Shown":
        rows = [c for c in chunks]
        if not rows:
            empty = np.zeros(0, dtype="V16")
            return cls(empty, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), empty)
        r = np.concatenate(rows) if len(rows) > 1 else rows[0]
        return cls(r["user_id"].copy(), r["variant"].astype(np.int64), r["shown_at"].astype(np.int64),
                   r["page"].astype(np.int64), r["media_id"].copy())


def build(
    experiment: Experiment,
    shown: Shown,
    interactions: Callable[[list[UUID]], Iterator[np.ndarray]],
    window_hours: float = DEFAULT_WINDOW_HOURS,
) -> dict:
    """The report as a dict (what `--json` prints). `interactions(user_ids)` yields the users'
    positive interactions as rows of (user_id V16, media_id V16, at microseconds)."""
    started = time.perf_counter()
    users, user_idx = np.unique(shown.user, return_inverse=True)
    user_variant = np.full(len(users), -1, dtype=np.int64)
    user_variant[user_idx[::-1]] = shown.variant[::-1]  # each user's variant, from their first page
    media, media_idx = np.unique(shown.media, return_inverse=True)
    on_page = shown.media != NIL

    raw = users.tobytes()
    rows = list(interactions([UUID(bytes=raw[i:i + 16]) for i in range(0, len(raw), 16)]))
    done = np.concatenate(rows) if rows else np.zeros(0, dtype=[("user_id", "V16"), ("media_id", "V16"), ("at", ">i8")])
    i_user = np.searchsorted(users, done["user_id"]) if len(users) else np.zeros(len(done), np.int64)
    i_media = np.minimum(np.searchsorted(media, done["media_id"]), max(len(media) - 1, 0))
    known = (media[i_media] == done["media_id"]) if len(media) else np.zeros(len(done), bool)  # shown to someone
    hit = np.zeros(len(done), dtype=bool)
    if known.any():
        hit[known] = attributed(
            user_idx[on_page].astype(np.int64), media_idx[on_page].astype(np.int64), shown.shown_at[on_page],
            i_user[known].astype(np.int64), i_media[known].astype(np.int64), done["at"][known].astype(np.int64),
            int(window_hours * 3600 * 1_000_000),
        )
    converted = np.zeros(len(users), dtype=bool)
    converted[i_user[hit]] = True
    pairs = np.unique(i_user[hit] * max(len(media), 1) + i_media[hit])  # each (user, media) counts once

    _, first_row = np.unique(shown.page, return_index=True)  # each page once
    pages = np.bincount(shown.variant[first_row], minlength=len(experiment.variants))
    conversions = np.bincount(user_variant[pairs // max(len(media), 1)], minlength=len(experiment.variants)) \
        if len(pairs) else np.zeros(len(experiment.variants), np.int64)

    variants = {}
    exposed = np.bincount(user_variant, minlength=len(experiment.variants)) if len(users) else \
        np.zeros(len(experiment.variants), np.int64)
    won = np.bincount(user_variant[converted], minlength=len(experiment.variants)) if len(users) else exposed
    n0, c0 = int(exposed[0]), int(won[0])
    for i, variant in enumerate(experiment.variants):
        n, c = int(exposed[i]), int(won[i])
        lift, lift_ci = (None, None) if i == 0 else stats.relative_lift(c, n, c0, n0)
        variants[variant.name] = {
            "share": variant.share,
            "overrides": variant.overrides,
            "users": n,
            "impressions": int(pages[i]),
            "converted_users": c,
            "conversion_rate": c / n if n else None,
            "ci95": list(stats.wilson_interval(c, n)) if n else None,
            "conversions": int(conversions[i]),
            "conversions_per_impression": int(conversions[i]) / int(pages[i]) if pages[i] else None,
            "lift": lift,
            "lift_ci95": None if lift_ci is None else list(lift_ci),
            "p_value": None if i == 0 else stats.two_proportion_p_value(c, n, c0, n0),
        }
    srm = stats.srm_p_value([int(x) for x in exposed], [v.share for v in experiment.variants])
    warnings = []
    if srm is not None and srm < SRM_THRESHOLD:
        warnings.append(
            f"sample ratio mismatch: users per variant ({', '.join(str(int(x)) for x in exposed)}) do not match the "
            f"shares (p = {srm:.2g} < {SRM_THRESHOLD}); the comparison is not to be trusted"
        )
    return {
        "experiment": experiment.name,
        "started_at": experiment.started_at and experiment.started_at.astimezone(timezone.utc).isoformat(),
        "stopped_at": experiment.stopped_at and experiment.stopped_at.astimezone(timezone.utc).isoformat(),
        "window_hours": window_hours,
        "variants": variants,
        "srm_p_value": srm,
        "warnings": warnings,
        "seconds": round(time.perf_counter() - started, 3),
    }


def text(report: dict) -> str:
    """The report as a table for a terminal (and report.md)."""
    lines = [
        f"experiment {report['experiment']} (started {report['started_at']}"
        + (f", stopped {report['stopped_at']}" if report["stopped_at"] else ", running")
        + f"); conversion: a like or watch of a shown media within {report['window_hours']:g} h",
        "",
        "| variant | users | impressions | converted | conversion rate (95 % CI) | per impression | lift vs control (95 % CI) | p-value |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- | ---: |",
    ]
    for name, v in report["variants"].items():
        rate = "-" if v["conversion_rate"] is None else \
            f"{v['conversion_rate']:.2%} ({v['ci95'][0]:.2%} - {v['ci95'][1]:.2%})"
        per = "-" if v["conversions_per_impression"] is None else f"{v['conversions_per_impression']:.4f}"
        if v["lift"] is None:
            lift = "control" if v is next(iter(report["variants"].values())) else "-"
        else:
            lift = f"{v['lift']:+.1%}" + ("" if v["lift_ci95"] is None else
                                           f" ({v['lift_ci95'][0]:+.1%} - {v['lift_ci95'][1]:+.1%})")
        p = "" if v["p_value"] is None else f"{v['p_value']:.3g}"
        lines.append(f"| {name} | {v['users']:,} | {v['impressions']:,} | {v['converted_users']:,} | {rate} | {per} "
                     f"| {lift} | {p} |")
    srm = report["srm_p_value"]
    lines += ["", f"split check (sample ratio mismatch): p = {'-' if srm is None else f'{srm:.3g}'}"]
    lines += [f"WARNING: {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def write(report: dict, out: Path) -> list[Path]:
    """report.md, report.json and conversion.svg (the rate per variant with its interval) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "report.md", out / "report.json", out / "conversion.svg"]
    files[0].write_text(f"# Experiment {report['experiment']}\n\n{text(report)}\n![conversion rate](conversion.svg)\n")
    files[1].write_text(json.dumps(report, indent=2) + "\n")
    files[2].write_text(chart(report))
    return files


def chart(report: dict, width: int = 640, bar: int = 36) -> str:
    """An SVG chart: per variant, a bar at its conversion rate and a whisker over its 95 % interval."""
    variants = [(name, v) for name, v in report["variants"].items() if v["conversion_rate"] is not None]
    top = max([v["ci95"][1] for _, v in variants] + [1e-9])
    left, right, row = 140, 80, bar + 14
    height = 50 + row * len(variants)

    def x(rate: float) -> float:
        return left + (width - left - right) * rate / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">',
        f'<text x="{left}" y="20" font-weight="bold">Conversion rate per variant (95 % interval), '
        f'{html.escape(report["experiment"])}</text>',
    ]
    for i, (name, v) in enumerate(variants):
        y = 34 + i * row
        lo, hi = v["ci95"]
        colour = "#2b6cb0" if i else "#718096"
        parts += [
            f'<text x="{left - 8}" y="{y + bar / 2 + 4}" text-anchor="end">{html.escape(name)}</text>',
            f'<rect x="{left}" y="{y}" width="{x(v["conversion_rate"]) - left:.1f}" height="{bar}" fill="{colour}" opacity="0.7"/>',
            f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{y + bar / 2}" y2="{y + bar / 2}" stroke="black" stroke-width="2"/>',
            f'<line x1="{x(lo):.1f}" x2="{x(lo):.1f}" y1="{y + 8}" y2="{y + bar - 8}" stroke="black" stroke-width="2"/>',
            f'<line x1="{x(hi):.1f}" x2="{x(hi):.1f}" y1="{y + 8}" y2="{y + bar - 8}" stroke="black" stroke-width="2"/>',
            f'<text x="{x(hi) + 6:.1f}" y="{y + bar / 2 + 4}">{v["conversion_rate"]:.2%}</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
