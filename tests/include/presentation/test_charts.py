"""The report's charts: every label inside the figure (nothing clipped at the edge of the saved image)."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from include.reserving.presentation import charts

ORIGINS = [f"{year}Q{q}" for year in range(2014, 2024) for q in range(1, 5)]  # 40 origins, as the large book


def _pattern() -> Figure:
    ages = list(range(3, 123, 3))
    pattern = pd.DataFrame({"development": ages, "percent": [min(1.0, a / 120) for a in ages]})
    observed = pd.DataFrame(
        [(origin, age, min(1.0, age / 110)) for origin in range(10) for age in ages[: 40 - 4 * origin]],
        columns=["origin", "development", "percent"],
    )
    return charts.development_pattern(pattern, observed, title="Liability: development pattern")


def _unpaid() -> Figure:
    # tens of millions: the widest tick labels the book has ("25,000,000")
    n = len(ORIGINS)
    reserves = pd.DataFrame(
        {
            "case_reserve": [250_000.0 * (i + 1) for i in range(n)],
            "ibnr": [400_000.0 * (i + 1) for i in range(n)],
            "unpaid": [650_000.0 * (i + 1) for i in range(n)],
            "std_err": [90_000.0 * (i + 1) for i in range(n)],
        }
    )
    return charts.unpaid_by_origin(ORIGINS, reserves, "Liability: unpaid by origin")


def _actual_vs_expected() -> Figure:
    ave = pd.DataFrame(
        {"segment": ["Liability", "Motor", "Property"], "actual": [41e6, 12e6, 4e6], "expected": [39e6, 13e6, 4e6]}
    )
    return charts.actual_vs_expected(ave)


def _run_durations() -> Figure:
    labels = [f"2023-{m:02d}-28" for m in range(1, 13)]
    return charts.run_durations(labels, [30.0 + m for m in range(12)], [m != 4 for m in range(12)])


def _undrawn_ticks(fig: Figure) -> set[int]:
    """The tick labels matplotlib holds but does not draw: their ticks lie outside the axis' view interval."""
    out = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            slack = 1e-9 * (hi - lo)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - slack <= tick.get_loc() <= hi + slack:
                    out |= {id(tick.label1), id(tick.label2)}
    return out


@pytest.mark.parametrize("draw", [_pattern, _unpaid, _actual_vs_expected, _run_durations])
def test_every_label_lies_inside_the_figure(draw):
    fig = draw()
    fig.set_dpi(charts.DPI)  # as saved by charts.to_png
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = fig.bbox
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text() and id(t) not in _undrawn_ticks(fig)]
    assert len(texts) >= 5  # the title, the axis and tick labels are among them
    outside = []
    for text in texts:
        extent = text.get_window_extent(renderer)
        if extent.x0 < box.x0 or extent.y0 < box.y0 or extent.x1 > box.x1 or extent.y1 > box.y1:
            outside.append((text.get_text(), [round(v, 1) for v in extent.extents]))
    assert not outside, (box.extents, outside)
