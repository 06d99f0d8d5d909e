"""The evaluate stage: rolling-origin backtests of the projected paid emergence, the spec search, actual vs expected.

A backtest refits a spec as at earlier valuations: fold ``t`` (1..k) drops the latest ``t`` calendar diagonals, fits
on the rest, and projects each origin it saw from its latest paid then to its latest paid now, ``t`` diagonals later
(fewer where that age lies beyond the ages the fold could learn from: the tail cannot be backtested). What the model
expected to emerge over those diagonals, cumulative, is compared with what emerged, summed over the origins of each
segment: the part of that valuation's reserve the data has since revealed.

Scores per segment, over the folds: ``wape`` (sum over folds of the absolute emergence errors over the sum of the
absolute actual emergence), ``bias`` (the same with signed errors, expected less actual: positive when the model
expected more than emerged) and ``rmse`` (of the folds' errors, in money). The overall row (``"ALL"``) averages the
segments' ``wape`` and ``bias``, each capped at 1 (100% of what emerged), with equal weights, so a small company or
line counts as much as a large one and none where almost nothing emerged outweighs the rest, and
``score = 1 - wape`` (higher is better, as the promotion rule ``score(challenger) > score(champion) + delta``
expects). The search and the promotion rule use this same score; a spec whose mean absolute segment bias is materially
worse than the chain ladder's (see :func:`include.reserving.governance.materially_more_biased`) is never selected.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from include.reserving import cells as cellsmod
from include.reserving import governance
from include.reserving.config import Settings, load_settings
from include.reserving.domain import OVERALL
from include.reserving.models import ReservingModel, build_model

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["segment", "folds", "actual", "expected", "wape", "bias", "rmse", "score"]
EMERGENCE_COLUMNS = ["fold", "segment", "origin", "development_from", "development_to", "actual", "expected"]
ROLLING_ORIGINS = 4  # the default of the ``backtest_diagonals`` setting
ORIGIN_KEY = ["segment", "origin"]
RELATIVE_CAP = 1.0  # a segment's WAPE and bias enter the overall mean capped at 100% of what emerged


@dataclass(frozen=True)
class BacktestResult:
    """Outcome of one rolling-origin backtest.

    Attributes
    ----------
    spec : dict
        The spec that was backtested.
    scores : pandas.DataFrame
        One row per segment and one ``segment == "ALL"`` row: ``folds, actual, expected, wape, bias, rmse, score``.
    emergence : pandas.DataFrame
        One row per fold and origin scored: ``fold, segment, origin, development_from, development_to, actual,
        expected`` (paid emerging from age ``development_from``, the fold's latest, to ``development_to``).
    """

    spec: dict[str, Any]
    scores: pd.DataFrame
    emergence: pd.DataFrame

    @property
    def score(self) -> float:
        """Overall score (1 - the segments' mean WAPE), the number champion/challenger compares."""
        return float(self._overall("score"))

    @property
    def bias(self) -> float:
        """Overall bias (the segments' mean, signed)."""
        return float(self._overall("bias"))

    @property
    def abs_bias(self) -> float:
        """The segments' mean absolute bias (each capped like the mean), what the bias guard compares with chain
        ladder's: signed, chain ladder's +61%, -36% and -15% on three lines of a small book average +3%."""
        segments = self.scores.loc[self.scores["segment"] != OVERALL, "bias"]
        return float(segments.clip(-RELATIVE_CAP, RELATIVE_CAP).abs().mean())

    def _overall(self, column: str) -> float:
        return self.scores.loc[self.scores["segment"] == OVERALL, column].iloc[0]


def split(cells: pd.DataFrame, k: int, grain_months: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split cells into those strictly before the latest ``k`` calendar diagonals and the held-out rest."""
    if k < 1:
        raise ValueError(f"hold out at least one diagonal, not k={k}")
    cells = cellsmod.normalise(cells)
    diagonal = cellsmod.diagonal(cells, grain_months)
    if diagonal.max() < k:
        raise ValueError(f"cells span {diagonal.max() + 1} diagonals: cannot hold out {k} and keep any to fit on")
    return cellsmod.before_diagonals(cells, k, grain_months), cells[diagonal < k].reset_index(drop=True)


def projected_emergence(model: ReservingModel, train: pd.DataFrame, held_out: pd.DataFrame) -> pd.DataFrame:
    """Actual and expected paid emerging after ``train`` for each origin the model saw, from a model fitted on it.

    Each origin runs from its latest training cell to its latest held-out cell at an age the training cells reach
    (beyond it the projection is the tail's, which no fold can test); origins without such a cell are left out.
    """
    columns = ["development", "paid"]
    start = train.sort_values("development").groupby(ORIGIN_KEY)[columns].last()
    reached = held_out[held_out["development"] <= train["development"].max()]
    end = reached.sort_values("development").groupby(ORIGIN_KEY)[columns].last()
    out = start.merge(end, how="inner", left_index=True, right_index=True, suffixes=("_from", "_to")).reset_index()
    square = model.predict(train).set_index(cellsmod.KEY_COLUMNS)["paid"]
    projected = square.reindex(pd.MultiIndex.from_arrays([out["segment"], out["origin"], out["development_to"]]))
    out["actual"] = out["paid_to"] - out["paid_from"]
    out["expected"] = projected.to_numpy() - out["paid_from"]
    return out[EMERGENCE_COLUMNS[1:]]


def score_emergence(emergence: pd.DataFrame) -> pd.DataFrame:
    """WAPE, bias and RMSE of each segment's emergence over the folds; ``"ALL"`` the segments' mean."""
    folds = emergence.groupby(["segment", "fold"], sort=True)[["actual", "expected"]].sum().reset_index()
    folds["error"] = folds["expected"] - folds["actual"]

    def _scores(group: pd.DataFrame) -> dict[str, float]:
        denominator = group["actual"].abs().sum()
        return {
            "folds": group["fold"].nunique(),
            "actual": float(group["actual"].sum()),
            "expected": float(group["expected"].sum()),
            "wape": float(group["error"].abs().sum() / denominator) if denominator > 0 else np.nan,
            "bias": float(group["error"].sum() / denominator) if denominator > 0 else np.nan,
            "rmse": float(np.sqrt((group["error"] ** 2).mean())) if len(group) else np.nan,
        }

    rows = [{"segment": segment, **_scores(group)} for segment, group in folds.groupby("segment", sort=True)]
    table = pd.DataFrame(rows, columns=SCORE_COLUMNS[:-1])
    overall = {
        "segment": OVERALL,
        "folds": folds["fold"].nunique(),
        "actual": float(folds["actual"].sum()),
        "expected": float(folds["expected"].sum()),
        # equal weight per segment (pooled, the largest segments' error would decide); capped at 100% of what
        # emerged, so a segment where almost nothing emerged cannot decide the mean on its own
        "wape": float(table["wape"].clip(upper=RELATIVE_CAP).mean()),
        "bias": float(table["bias"].clip(-RELATIVE_CAP, RELATIVE_CAP).mean()),
        "rmse": float(np.sqrt((folds["error"] ** 2).mean())) if len(folds) else np.nan,
    }
    table = pd.concat([table, pd.DataFrame([overall])], ignore_index=True)
    table["score"] = 1.0 - table["wape"]
    return table[SCORE_COLUMNS]


def backtest(
    cells: pd.DataFrame, spec: dict[str, Any], k: int = ROLLING_ORIGINS, grain_months: int | None = None
) -> BacktestResult:
    """Refit ``spec`` without each of the latest ``1..k`` diagonals and score the paid emerging since.

    Parameters
    ----------
    cells : pandas.DataFrame
        All cells as at the valuation date.
    spec : dict
        Model spec ``{"method": ..., "params": {...}}``.
    k : int
        Rolling origins: the earliest fold drops the latest ``k`` calendar diagonals and projects ``k`` ahead.
    grain_months : int, optional
        Development grain; inferred from the cells when omitted.

    Returns
    -------
    BacktestResult
    """
    cells = cellsmod.normalise(cells)
    grain = grain_months or cellsmod.development_months(cells)
    split(cells, k, grain)  # validates k against the diagonals there are
    diagonal = cellsmod.diagonal(cells, grain)
    frames = []
    for fold in range(1, k + 1):
        train, held_out = cellsmod.before_diagonals(cells, fold, grain), cells[diagonal < fold]
        model = build_model(spec).fit(train)
        frames.append(projected_emergence(model, train, held_out).assign(fold=fold))
    emergence = pd.concat(frames, ignore_index=True)[EMERGENCE_COLUMNS]
    return BacktestResult(spec=spec, scores=score_emergence(emergence), emergence=emergence)


def default_candidates(settings: Settings | None = None) -> list[dict[str, Any]]:
    """The specs the training search fits: every registered method's ``search_grid()``, chain ladder's first (only
    each method's first spec with the setting ``search_grid = "small"``). :func:`search` adds their blends."""
    from include.reserving.models import registered_methods

    settings = settings or load_settings()
    grids = [cls.search_grid() for cls in registered_methods().values()]
    return [spec for grid in grids for spec in (grid[:1] if settings.search_grid == "small" else grid)]


def blended_candidates(candidates: list[dict[str, Any]], weights: tuple[float, ...]) -> list[dict[str, Any]]:
    """Each candidate of another method (neither a chain ladder nor a blend: Cape Cod, the learned models) blended
    with the plain chain ladder at each weight: the shrinkage toward chain ladder the search may prefer when the other
    method's lead is not clear."""
    from include.reserving.models import Blend, registered_methods

    if registered_methods().get(Blend.method) is not Blend:
        return []
    learned = [s for s in candidates if s["method"] not in (governance.FALLBACK_SPEC["method"], Blend.method)]
    return [{"method": "blend", "params": {"challenger": spec, "weight": w}} for spec in learned for w in weights]


def _derived_blend(spec: dict[str, Any], results: dict[str, BacktestResult]) -> BacktestResult | None:
    """A fixed-weight blend of the plain chain ladder and a candidate already backtested, from their emergence.

    The blend's square is ``(1 - w) * base + w * challenger`` cell by cell (a cell only one component projects keeps
    that one's), so its expected emergence on each fold is the same mix of theirs: no refit. None when the blend is
    not exactly that (another base, a learned weight, a component the blend would build differently).
    """
    params = spec.get("params") or {}
    if spec.get("method") != "blend" or params.get("weight") is None or params.get("base") is not None:
        return None
    try:
        components = build_model(spec).component_specs()
    except ValueError:
        return None
    built = {name: canonical(build_model(component).get_spec()) for name, component in components.items()}
    known = {canonical(build_model(json.loads(key)).get_spec()): key for key in results}
    if built["base"] != canonical(build_model(governance.FALLBACK_SPEC).get_spec()):
        return None
    base, challenger = known.get(built["base"]), known.get(built["challenger"])
    if base is None or challenger is None:
        return None
    weight = float(params["weight"])
    keys = EMERGENCE_COLUMNS[:-1]
    merged = results[base].emergence.merge(
        results[challenger].emergence[[*keys, "expected"]], on=keys, how="left", suffixes=("_base", "_challenger")
    )
    one, other = merged["expected_base"], merged["expected_challenger"]
    merged["expected"] = ((1.0 - weight) * one + weight * other).fillna(one).fillna(other)
    emergence = merged[EMERGENCE_COLUMNS]
    return BacktestResult(spec=spec, scores=score_emergence(emergence), emergence=emergence)


def _losses(result: BacktestResult) -> dict[str, pd.Series]:
    """The units a score is made of, by segment: a line's score is 1 - the sum over folds of its fold's absolute
    error over the line's absolute emergence (units: folds); the overall one 1 - the mean over segments of their
    capped WAPE (units: segments)."""
    folds = result.emergence.groupby(["segment", "fold"], sort=True)[["actual", "expected"]].sum()
    error = (folds["expected"] - folds["actual"]).abs()
    denominator = folds["actual"].abs().groupby(level="segment").transform("sum")
    units = (error / denominator.where(denominator > 0)).dropna()
    out = {str(segment): group.droplevel("segment") for segment, group in units.groupby(level="segment")}
    wape = result.scores.set_index("segment")["wape"].drop(OVERALL, errors="ignore").dropna()
    out[OVERALL] = wape.clip(upper=RELATIVE_CAP)
    return out


def standard_error(losses: pd.Series, best: pd.Series, mean: bool) -> float:
    """Standard error of the difference of two scores built from paired units (a sum of them, or their ``mean``),
    the units taken as independent; infinite with fewer than two common units (no evidence of a difference)."""
    difference = (losses - best).dropna()
    if len(difference) < 2:
        return float("inf")
    spread = float(difference.std(ddof=1))
    return spread / np.sqrt(len(difference)) if mean else spread * np.sqrt(len(difference))


SEARCH_COLUMNS = [
    "segment",
    "order",
    "spec",
    "wape",
    "bias",
    "abs_bias",
    "rmse",
    "score",
    "eligible",
    "complexity",
    "se",
    "selected",
]


def search(
    cells: pd.DataFrame,
    candidates: list[dict[str, Any]] | None = None,
    k: int = ROLLING_ORIGINS,
    bias_margin: float = governance.BIAS_MARGIN,
    grain_months: int | None = None,
    blend_weights: tuple[float, ...] | None = None,
    se_multiple: float | None = None,
) -> pd.DataFrame:
    """The training search: every candidate's rolling-origin backtest, per line and overall (``"ALL"``), and the
    winner of each.

    Without ``candidates``: :func:`default_candidates` and their blends with chain ladder at the setting
    ``search_blend_weights`` (``blend_weights`` overrides; given candidates are blended only at ``blend_weights``).

    The selection rule, on each line (and overall) alike: a candidate whose bias there is materially worse than the
    plain chain ladder's (:data:`include.reserving.governance.FALLBACK_SPEC`, backtested too if not a candidate) is
    not eligible; of the eligible candidates whose score is within ``se_multiple`` (default: the setting
    ``search_se_multiple``) standard errors of the best score, the simplest (lowest ``complexity``; then the higher
    score, then the earlier candidate) wins: the one-standard-error rule. The standard error is that of the score
    difference to the best, from paired units (the folds of a line, the segments overall), so a lead that a few folds
    cannot tell from noise goes to the simpler candidate, ultimately the chain ladder.

    Returns one row per (segment, candidate): ``segment``, ``order`` (the candidate's position), ``spec`` (JSON
    text), ``wape``, ``bias``, ``abs_bias`` (what the bias guard compares), ``rmse``, ``score``, ``eligible``,
    ``complexity``, ``se`` (of the difference to the best eligible score; 0 for the best) and ``selected`` (the
    winner).
    """
    settings = None
    if candidates is None or se_multiple is None:
        settings = load_settings()
    if candidates is None:
        candidates = default_candidates(settings)
        blend_weights = settings.search_blend_weights if blend_weights is None else blend_weights
    se_multiple = settings.search_se_multiple if se_multiple is None else se_multiple
    blends = blended_candidates(candidates, tuple(blend_weights or ()))
    candidates = [*candidates, *(b for b in blends if b not in candidates)]
    results: dict[str, BacktestResult] = {}
    # the blends last: one of the plain chain ladder and a fitted candidate is their weighted emergence
    for spec in sorted(candidates, key=lambda s: s in blends):
        key = canonical(spec)
        results[key] = _derived_blend(spec, results) or backtest(cells, spec, k=k, grain_months=grain_months)
        # the search runs for minutes on a large book: one line per candidate shows where it is
        log.info("candidate %d of %d: %s score %.4f", len(results), len(candidates), key, results[key].score)
    baseline = results.get(canonical(governance.FALLBACK_SPEC))
    baseline = baseline or backtest(cells, governance.FALLBACK_SPEC, k=k, grain_months=grain_months)

    def guarded(result: BacktestResult) -> dict[str, float]:
        """The bias the guard compares, by segment: the line's own; over all lines the mean absolute bias."""
        return result.scores.set_index("segment")["bias"].abs().to_dict() | {OVERALL: result.abs_bias}

    baseline_bias = guarded(baseline)
    rows, losses = [], {}
    for order, spec in enumerate(candidates):
        result = results[canonical(spec)]
        own, losses[order] = guarded(result), _losses(result)
        complexity = build_model(spec).complexity()
        for r in result.scores.itertuples():
            rows.append(
                {
                    "segment": r.segment,
                    "order": order,
                    "spec": canonical(spec),
                    "wape": float(r.wape),
                    "bias": float(r.bias),
                    "abs_bias": float(own[r.segment]),
                    "rmse": float(r.rmse),
                    "score": float(r.score),
                    "eligible": not governance.materially_more_biased(
                        float(own[r.segment]), float(baseline_bias.get(r.segment, np.nan)), bias_margin
                    ),
                    "complexity": complexity,
                }
            )
    table = pd.DataFrame(rows, columns=SEARCH_COLUMNS[:-2])
    parts = [_select(group, losses, se_multiple) for _, group in table.groupby("segment", sort=False)]
    return pd.concat(parts).sort_index()[SEARCH_COLUMNS]


def _select(group: pd.DataFrame, losses: dict[int, dict[str, pd.Series]], se_multiple: float) -> pd.DataFrame:
    """One segment's rows with ``se`` and ``selected``: the one-standard-error rule of :func:`search`."""
    group = group.copy()
    segment = str(group["segment"].iloc[0])
    group["se"], group["selected"] = np.nan, False
    eligible = group[group["eligible"]]
    scored = eligible.dropna(subset=["score"])
    if not scored.empty:
        best = scored.sort_values(["score", "order"], ascending=[False, True]).iloc[0]
        best_losses = losses[int(best["order"])].get(segment, pd.Series(dtype=float))
        for index, row in group.iterrows():
            own = losses[int(row["order"])].get(segment, pd.Series(dtype=float))
            group.at[index, "se"] = (
                0.0 if row["order"] == best["order"] else standard_error(own, best_losses, mean=segment == OVERALL)
            )
        gap = best["score"] - eligible["score"]
        eligible = eligible[gap <= se_multiple * group.loc[eligible.index, "se"] + governance.SCORE_EPS]
    if not eligible.empty:
        # no score on the line (nothing emerged there): no evidence for anything but the simplest
        winner = eligible.sort_values(["complexity", "score", "order"], ascending=[True, False, True]).index[0]
        group.at[winner, "selected"] = True
    return group


def canonical(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True)


def ranked(table: pd.DataFrame, segment: str) -> pd.DataFrame:
    """The search's candidates on one line (or ``"ALL"``), the winner first, then the eligible ones by score (ties to
    the earlier candidate), then the rest."""
    rows = table[table["segment"] == segment]
    selected = rows["selected"].fillna(False).astype(bool) if "selected" in rows else False
    rows = rows.assign(_selected=selected)
    keys = ["_selected", "eligible", "score", "order"]
    return rows.sort_values(keys, ascending=[False, False, False, True], na_position="last").drop(columns="_selected")


def best_per_line(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Each line's winning spec in a :func:`search` table, by line."""
    lines = sorted(set(table["segment"]) - {OVERALL})
    return {line: json.loads(ranked(table, line)["spec"].iloc[0]) for line in lines}


def select_spec(
    cells: pd.DataFrame,
    candidates: list[dict[str, Any]] | None = None,
    k: int = ROLLING_ORIGINS,
    bias_margin: float = governance.BIAS_MARGIN,
    grain_months: int | None = None,
    blend_weights: tuple[float, ...] | None = None,
    se_multiple: float | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The one spec selected over every line (the overall row of :func:`search`; the benchmarks compare it).

    Returns
    -------
    best : dict
        The winning spec (:func:`search`'s rule on the overall row: units are the segments).
    table : pandas.DataFrame
        ``spec`` (JSON text), ``mean_wape``, ``mean_bias``, ``mean_score`` (the overall row's: means over segments),
        ``mean_abs_bias`` (the segments' mean absolute bias), ``eligible`` (False: that is materially worse than
        chain ladder's), ``complexity``, ``se`` and ``selected`` per candidate, the winner first.
    """
    searched = search(cells, candidates, k, bias_margin, grain_months, blend_weights, se_multiple)
    table = ranked(searched, OVERALL).rename(
        columns={"wape": "mean_wape", "bias": "mean_bias", "abs_bias": "mean_abs_bias", "score": "mean_score"}
    )
    best = json.loads(table["spec"].iloc[0])
    columns = ["spec", "mean_wape", "mean_bias", "mean_abs_bias", "mean_score", "eligible", "complexity", "se"]
    return best, table[[*columns, "selected"]].reset_index(drop=True)


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
