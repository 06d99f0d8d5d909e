"""What the reserve report shows, built from frames already read from the warehouse (no I/O here)."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd

from include.reserving.presentation.report import ReportData


def selected_factors(cells: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Age-to-age factors shown in the report: the champion's own when it is chain ladder, else volume-weighted."""
    from include.reserving.models import ChainLadder, build_model

    model = build_model(spec) if spec.get("method") == "chain_ladder" else ChainLadder()
    ldf = model.fit(cells).ldf_.copy()
    ages = sorted(cells["development"].unique())
    step = dict(zip(ages[:-1], ages[1:], strict=False))
    ldf["development_to"] = ldf["development"].map(step)
    ldf = ldf.dropna(subset=["development_to"])
    return ldf.rename(columns={"ldf": "factor"})[["segment", "development", "development_to", "factor"]]


def report_data(
    *,
    valuation_date: dt.date,
    published: dict,
    line_specs: dict[str, dict],
    reserves: pd.DataFrame,
    previous_reserves: pd.DataFrame | None,
    previous_valuation_date: dt.date | None = None,
    cells: pd.DataFrame,
    backtest: pd.DataFrame,
    quality: pd.DataFrame,
    drift: pd.DataFrame,
    plausibility: pd.DataFrame | None = None,
    health: pd.DataFrame,
    reconciliation: pd.DataFrame | None = None,
    movements: pd.DataFrame | None = None,
    ranges: pd.DataFrame | None = None,
    cv_floor: float | None = None,
    origin_months: int | None = None,
) -> ReportData:
    """The report's content for V: the published rows and the frames around them, plus factors and A/E, each line's
    from the spec of the model that reserved it (``line_specs``; a spec shared by several lines computed once)."""
    from include.reserving.backtest import actual_vs_expected

    groups: dict[str, tuple[dict, list[str]]] = {}
    for segment, spec in sorted(line_specs.items()):
        groups.setdefault(json.dumps(spec, sort_keys=True), (spec, []))[1].append(segment)

    def per_line(compute) -> pd.DataFrame:
        frames = []
        for spec, lines in groups.values():  # fitted on the whole book, as the model was (cross-segment models)
            frame = compute(cells, spec)
            frames.append(frame[frame["segment"].isin(lines)])
        return pd.concat(frames, ignore_index=True).sort_values("segment", kind="stable").reset_index(drop=True)

    return ReportData(
        valuation_date=valuation_date,
        status=published["status"],
        champion_version=published["model_version"],
        publication_version=int(published["version"]),
        reserves=reserves,
        previous_reserves=previous_reserves,
        previous_valuation_date=previous_valuation_date,
        cells=cells,
        factors=per_line(selected_factors),
        actual_vs_expected=per_line(actual_vs_expected),
        backtest=backtest,
        quality=quality,
        **({} if plausibility is None else {"plausibility": plausibility}),
        drift=drift,
        health=health,
        **({} if reconciliation is None else {"reconciliation": reconciliation}),
        movements=movements,
        ranges=ranges,
        **({} if cv_floor is None else {"cv_floor": cv_floor}),
        origin_months=origin_months,
    )
