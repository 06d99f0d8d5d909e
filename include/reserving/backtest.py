"""The evaluate stage: leak-free backtests on held-out calendar diagonals, spec search, actual vs expected.

A backtest holds out the latest ``k`` calendar diagonals, fits a spec only on the cells strictly before them, projects
those cells, and scores the incremental paid the model expected on each held-out cell against what emerged. Only
origins the model saw are scored: an origin whose first cell is held out has no latest paid to develop from.

Scores: ``wape`` (sum of absolute errors over sum of absolute actual incrementals), ``rmse``, ``bias`` (expected
less actual, summed, over the same denominator: positive when the model expected more than emerged), and
``score = 1 - wape`` (higher is better, as the champion/challenger rule ``score(challenger) > score(champion) +
delta`` expects).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from include.reserving import cells as cellsmod
from include.reserving.domain import OVERALL
from include.reserving.models import ReservingModel, build_model

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["segment", "n_cells", "actual", "expected", "wape", "bias", "rmse", "score"]


@dataclass(frozen=True)
class BacktestResult:
    """Outcome of one backtest.

    Attributes
    ----------
    spec : dict
        The spec that was backtested.
    scores : pandas.DataFrame
        One row per segment and one ``segment == "ALL"`` row: ``n_cells, actual, expected, wape, bias, rmse, score``.
    cells : pandas.DataFrame
        Held-out cells scored: ``segment, origin, development, diagonal, actual, expected`` (incremental paid).
    """

    spec: dict[str, Any]
    scores: pd.DataFrame
    cells: pd.DataFrame

    @property
    def score(self) -> float:
        """Overall score (1 - WAPE), the number champion/challenger compares."""
        return float(self.scores.loc[self.scores["segment"] == OVERALL, "score"].iloc[0])


def split(cells: pd.DataFrame, k: int, grain_months: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split cells into those strictly before the latest ``k`` calendar diagonals and the held-out rest."""
    if k < 1:
        raise ValueError(f"hold out at least one diagonal, not k={k}")
    cells = cellsmod.normalise(cells)
    diagonal = cellsmod.diagonal(cells, grain_months)
    if diagonal.max() < k:
        raise ValueError(f"cells span {diagonal.max() + 1} diagonals: cannot hold out {k} and keep any to fit on")
    return cells[diagonal >= k].reset_index(drop=True), cells[diagonal < k].reset_index(drop=True)


def expected_increments(
    model: ReservingModel, train: pd.DataFrame, held_out: pd.DataFrame, grain_months: int
) -> pd.DataFrame:
    """Actual and expected incremental paid of each held-out cell, from a model fitted on ``train``.

    The expected cumulative at an age beyond the training triangle's last age is the model's ultimate.
    """
    square = model.predict(train)
    projected = square.set_index(cellsmod.KEY_COLUMNS)["paid"]
    ultimate = square[square["development"] == cellsmod.ULTIMATE_DEVELOPMENT].set_index(["segment", "origin"])["paid"]

    def expected_cumulative(keys: pd.MultiIndex) -> np.ndarray:
        found = projected.reindex(keys).to_numpy()
        return np.where(np.isnan(found), ultimate.reindex(keys.droplevel(2)).to_numpy(), found)

    seen = pd.MultiIndex.from_frame(held_out[["segment", "origin"]]).isin(ultimate.index)
    scored = held_out[seen].copy()
    scored["diagonal"] = cellsmod.diagonal(held_out, grain_months)[seen]
    now = pd.MultiIndex.from_frame(scored[cellsmod.KEY_COLUMNS])
    before = pd.MultiIndex.from_arrays([scored["segment"], scored["origin"], scored["development"] - grain_months])
    actual = pd.concat([train, held_out]).set_index(cellsmod.KEY_COLUMNS)["paid"]
    scored["actual"] = scored["paid"].to_numpy() - actual.reindex(before).to_numpy()
    scored["expected"] = expected_cumulative(now) - expected_cumulative(before)
    return scored[["segment", "origin", "development", "diagonal", "actual", "expected"]].reset_index(drop=True)


def score_increments(increments: pd.DataFrame) -> pd.DataFrame:
    """WAPE, bias, RMSE and score of actual against expected increments, per segment and overall (``"ALL"``)."""

    def _scores(group: pd.DataFrame) -> dict[str, float]:
        error = group["actual"] - group["expected"]
        denominator = group["actual"].abs().sum()
        wape = float(error.abs().sum() / denominator) if denominator > 0 else np.nan
        bias = float(-error.sum() / denominator) if denominator > 0 else np.nan
        return {
            "n_cells": len(group),
            "actual": float(group["actual"].sum()),
            "expected": float(group["expected"].sum()),
            "wape": wape,
            "bias": bias,
            "rmse": float(np.sqrt((error**2).mean())) if len(group) else np.nan,
            "score": 1.0 - wape,
        }

    rows = [{"segment": segment, **_scores(group)} for segment, group in increments.groupby("segment", sort=True)]
    rows.append({"segment": OVERALL, **_scores(increments)})
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def backtest(cells: pd.DataFrame, spec: dict[str, Any], k: int = 4, grain_months: int | None = None) -> BacktestResult:
    """Fit ``spec`` on the cells before the latest ``k`` diagonals and score it on them.

    Parameters
    ----------
    cells : pandas.DataFrame
        All cells as at the valuation date.
    spec : dict
        Model spec ``{"method": ..., "params": {...}}``.
    k : int
        Calendar diagonals to hold out.
    grain_months : int, optional
        Development grain; inferred from the cells when omitted.

    Returns
    -------
    BacktestResult
    """
    cells = cellsmod.normalise(cells)
    grain = grain_months or cellsmod.development_months(cells)
    train, held_out = split(cells, k, grain)
    model = build_model(spec).fit(train)
    increments = expected_increments(model, train, held_out, grain)
    return BacktestResult(spec=spec, scores=score_increments(increments), cells=increments)


def cross_validate(
    cells: pd.DataFrame, spec: dict[str, Any], folds: int = 3, horizon: int = 1, grain_months: int | None = None
) -> pd.DataFrame:
    """Time-series cross-validation over past diagonals.

    Fold ``j`` (1..folds) drops the latest ``(j - 1) * horizon`` diagonals, then backtests on the next ``horizon``
    diagonals, so every fold predicts only the future of its own training data.

    Returns
    -------
    pandas.DataFrame
        The overall score row of each fold with a ``fold`` column.
    """
    cells = cellsmod.normalise(cells)
    grain = grain_months or cellsmod.development_months(cells)
    diagonal = cellsmod.diagonal(cells, grain)
    rows = []
    for fold in range(1, folds + 1):
        past = cells[diagonal >= (fold - 1) * horizon]
        result = backtest(past, spec, k=horizon, grain_months=grain)
        rows.append(result.scores[result.scores["segment"] == OVERALL].assign(fold=fold))
    return pd.concat(rows, ignore_index=True)


def default_candidates() -> list[dict[str, Any]]:
    """The grid the training search tries: every registered method's ``search_grid()``, chain ladder's first."""
    from include.reserving.models import registered_methods

    return [spec for cls in registered_methods().values() for spec in cls.search_grid()]


def select_spec(
    cells: pd.DataFrame,
    candidates: list[dict[str, Any]] | None = None,
    folds: int = 3,
    horizon: int = 1,
    grain_months: int | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The training search: the candidate spec with the best mean cross-validated score.

    Returns
    -------
    best : dict
        The winning spec (ties go to the earlier candidate, so chain ladder wins a draw).
    table : pandas.DataFrame
        ``spec`` (JSON text), ``mean_wape``, ``mean_bias``, ``mean_score`` per candidate, best first.
    """
    rows = []
    candidates = candidates or default_candidates()
    for order, spec in enumerate(candidates):
        folds_frame = cross_validate(cells, spec, folds=folds, horizon=horizon, grain_months=grain_months)
        row = {
            "order": order,
            "spec": json.dumps(spec, sort_keys=True),
            "mean_wape": float(folds_frame["wape"].mean()),
            "mean_bias": float(folds_frame["bias"].mean()),
            "mean_score": float(folds_frame["score"].mean()),
        }
        rows.append(row)
        # the search runs for minutes on a large book: one line per candidate shows where it is
        log.info("candidate %d of %d: %s score %.4f", order + 1, len(candidates), row["spec"], row["mean_score"])
    table = pd.DataFrame(rows).sort_values(["mean_score", "order"], ascending=[False, True])
    best = json.loads(table["spec"].iloc[0])
    return best, table.drop(columns="order").reset_index(drop=True)


def actual_vs_expected(cells: pd.DataFrame, spec: dict[str, Any], grain_months: int | None = None) -> pd.DataFrame:
    """Actual against expected paid emergence on the newest diagonal, per segment.

    The expectation comes from ``spec`` (the champion) fitted without the newest diagonal, i.e. on the data as at
    the previous valuation; origins first seen on the newest diagonal carry no expectation and are left out.

    Returns
    -------
    pandas.DataFrame
        Columns ``segment, actual, expected, ratio`` (``ratio = actual / expected``, NaN when nothing was expected).
    """
    cells = cellsmod.normalise(cells)
    grain = grain_months or cellsmod.development_months(cells)
    train, newest = split(cells, 1, grain)
    model = build_model(spec).fit(train)
    increments = expected_increments(model, train, newest, grain)
    out = increments.groupby("segment", sort=True)[["actual", "expected"]].sum().reset_index()
    out["ratio"] = out["actual"] / out["expected"].where(out["expected"] != 0)
    return out
