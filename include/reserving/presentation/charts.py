"""Charts for the reserve report, drawn with matplotlib's object API (no pyplot, no global state) into PNG bytes.

Every function takes plain data frames and returns PNG bytes; the same data gives the same image, so the report
stays byte-identical between runs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from include.reserving.presentation.formatting import money

DPI = 120
PALETTE = {"champion": "#1f4e79", "challenger": "#c55a11", "grey": "#9e9e9e", "bad": "#c00000", "good": "#2e7d32"}


def to_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes."""
    buffer = io.BytesIO()
    # Fixed metadata: no software version or timestamp in the image, so equal data gives equal bytes.
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _figure(width: float, height: float) -> Figure:
    """A figure whose layout is fitted when drawn, so titles, axis and tick labels stay inside it (none clipped)."""
    return Figure(figsize=(width, height), layout="constrained")


def _thousands(value: float, _pos: int | None = None) -> str:
    return money(value, digits=0)


def development_pattern(
    pattern: pd.DataFrame, observed: pd.DataFrame | None = None, title: str = "Development pattern"
) -> Figure:
    """Percent of ultimate paid by age: the selected pattern (``development``, ``percent``) over observed origins.

    ``observed`` has ``origin``, ``development``, ``percent`` (paid to date over the origin's ultimate).
    """
    fig = _figure(5.2, 3.0)
    ax = fig.add_subplot()
    if observed is not None and not observed.empty:
        for _, one in observed.sort_values(["origin", "development"]).groupby("origin", sort=True):
            ax.plot(one["development"], one["percent"] * 100, color=PALETTE["grey"], linewidth=0.7, alpha=0.8)
        ax.plot([], [], color=PALETTE["grey"], linewidth=0.7, label="observed origins (paid / ultimate)")
    if not pattern.empty:
        ax.plot(
            pattern["development"],
            pattern["percent"] * 100,
            color=PALETTE["champion"],
            marker="o",
            markersize=3,
            linewidth=1.8,
            label="selected pattern (1 / CDF)",
        )
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("development age (months)", fontsize=8)
    ax.set_ylabel("% of ultimate paid", fontsize=8)
    ax.set_ylim(0, 105)
    ax.tick_params(labelsize=7)
    ax.grid(True, linewidth=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def unpaid_by_origin(labels: Sequence[str], reserves: pd.DataFrame, title: str) -> Figure:
    """Bars of the unpaid by origin, split into case reserves and IBNR where incurred is known, with +/- one
    standard error of the unpaid where it is known (``reserves``: ``case_reserve, ibnr, unpaid, std_err``)."""
    fig = _figure(5.2, 3.0)
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    split = reserves["ibnr"].notna().to_numpy()
    case = np.where(split, reserves["case_reserve"].fillna(0.0), 0.0)
    rest = np.where(split, reserves["ibnr"].fillna(0.0), reserves["unpaid"])  # no split: the unpaid in one bar
    errors = reserves["std_err"].fillna(0.0).to_numpy(dtype=float)
    ax.bar(x, case, color=PALETTE["grey"], label="case reserves")
    ax.bar(
        x,
        rest,
        bottom=case,
        color=PALETTE["champion"],
        label="IBNR",
        yerr=errors if errors.any() else None,
        capsize=2,
        ecolor="#444444",
    )
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel("unpaid (error bar: 1 std. error)", fontsize=8)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(True, axis="y", linewidth=0.3)
    return fig


def actual_vs_expected(ave: pd.DataFrame) -> Figure:
    """Grouped bars of actual and expected paid on the newest diagonal by line."""
    fig = _figure(6.5, 3.0)
    ax = fig.add_subplot()
    x = np.arange(len(ave))
    ax.bar(x - 0.2, ave["expected"], width=0.4, color=PALETTE["grey"], label="expected")
    ax.bar(x + 0.2, ave["actual"], width=0.4, color=PALETTE["champion"], label="actual")
    ax.set_xticks(x, [str(s) for s in ave["segment"]], fontsize=8)
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("Actual vs expected paid on the newest diagonal", fontsize=9)
    ax.grid(True, axis="y", linewidth=0.3)
    ax.legend(fontsize=7)
    return fig


def run_durations(labels: Sequence[str], minutes: Sequence[float], succeeded: Sequence[bool]) -> Figure:
    """Duration of each recent run, coloured by outcome."""
    fig = _figure(6.5, 2.6)
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    colours = [PALETTE["good"] if ok else PALETTE["bad"] for ok in succeeded]
    ax.bar(x, [0.0 if pd.isna(m) else m for m in minutes], color=colours)
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylabel("minutes", fontsize=8)
    ax.set_title("Run durations (green: success, red: failed)", fontsize=9)
    ax.grid(True, axis="y", linewidth=0.3)
    return fig
