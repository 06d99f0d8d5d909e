"""The actuarial methods a reserving actuary compares, and the selected ultimate per origin, for one segment.

Pure: a segment's cells as at V in, frames out; chainladder triangles only through :mod:`include.reserving.cells`.

Methods (chainladder 0.10, volume-weighted ``Development`` on all origins):

- **paid CL** and **incurred CL**: chain ladder on cumulative paid / incurred, each with its own tail
  (``tail_method``: ``TailCurve`` exponential or inverse power fitted to that triangle's age-to-age factors, a
  ``TailConstant``, or none); the tail factor and its effect on each origin's ultimate are reported; a part-elapsed
  origin (a quarter one or two months in) gets the elapsed share of its projection, since the factors of complete
  periods take in the accidents of the rest of its period (``cells.period_elapsed``);
- **BF** and **Cape Cod** on earned premium, developed on the ``expected_basis`` pattern (paid by default):
  Cape Cod finds its expected loss ratio (ELR) from the data (``CapeCod(decay, trend)``); BF takes its a-priori loss
  ratio from ``bf_apriori_loss_ratio`` when set, else the premium-weighted incurred-CL ultimate loss ratio of the
  mature origins (at least ``bf_apriori_maturity`` developed on the incurred pattern): the experience of the years
  whose ultimates are known well, applied to the years whose are not (BF with Cape Cod's ELR would be Cape Cod);
- optionally an ML model's ultimates, passed in as ``(origin, ultimate)``.

Selection (``selection_rule``): ``maturity`` takes the ``expected_basis`` chain ladder where the origin is at least
``selection_maturity`` developed on that pattern (what is left is small and the latest amount says most) and
``selection_immature_method`` (BF by default) elsewhere (there the chain ladder multiplies a small, noisy amount by
a large factor, while premium carries the exposure); a method name instead selects that method for every origin.
Each origin records the method and a one-line rationale. Why paid by default: on the synthetic book the case
reserves are noisy (nil claims carry reserves until closed) and incurred chain ladder ran 14% high on Liability,
while payments are facts; see BENCHMARKS.md "Truth benchmark".

Premium is per line of business (``earned_exposure``): a segment below line level (setting ``segment_by``, e.g.
line x region) has none, and an origin may lack it. Where the rule would select BF or Cape Cod without premium, the
``expected_basis`` chain ladder is selected instead and the rationale (and, for a whole segment, the summary's
selection rule, which the report prints) says why; premium is not allocated to segments. A segment without any
premium has no BF or Cape Cod ultimates (NaN); an origin without premium in a priced segment shows its chain ladder
there.

Flags (per method and for the selection): ``ultimate<incurred`` (negative IBNR: ultimate - incurred < 0) and
``ultimate<paid`` (negative unpaid).

A segment too young for factors of its own (every cell at one age, a new line) takes the model's ultimates, whose
chain ladder borrows factors from the rest of the book, without a range.

Ranges: Mack's total standard error of the ``range_basis`` chain ladder (paid by default: the paid chain ladder's
unpaid is the quantity Mack models directly, and its error is the wider, prudent one), tail included, taken as the
standard error of the segment's selected unpaid; P75/P95 from a lognormal with the selected unpaid as its mean
(:func:`include.reserving.models.base.reserve_percentiles`). Per origin the same: Mack's standard error of that
origin's ``range_basis`` chain ladder unpaid (NaN where Mack gives none, e.g. the oldest origin), percentiles around
the origin's selected unpaid. :func:`total_range` aggregates lines assuming they are
independent (standard errors add in quadrature). No CV is given where the unpaid is below ``cv_floor`` of the paid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import chainladder as cl
import numpy as np
import pandas as pd

from include.reserving import cells as cellsmod
from include.reserving.config import Settings, load_settings
from include.reserving.models.base import reserve_percentiles

log = logging.getLogger(__name__)

# A standard error above this multiple of the line's ultimate is an estimation breakdown, not a range.
RANGE_SANITY_FACTOR = 100.0
METHODS = ("paid_cl", "incurred_cl", "bf", "cape_cod")
MODEL = "model"
ORIGIN_COLUMNS = [
    "segment",
    "origin",
    "maturity",
    "earned_premium",
    "paid",
    "incurred",
    "pct_developed_paid",
    "pct_developed_incurred",
    *METHODS,
    MODEL,
    "paid_tail_effect",
    "incurred_tail_effect",
    "selected_ultimate",
    "selected_method",
    "unpaid",
    "case_reserves",
    "ibnr",
    "std_err",
    "p75",
    "p95",
    "rationale",
    "flags",
]
SUMMARY_COLUMNS = [
    "segment",
    "paid",
    "incurred",
    "earned_premium",
    *METHODS,
    MODEL,
    "selected_ultimate",
    "unpaid",
    "case_reserves",
    "ibnr",
    "selection_rule",
    "tail_method",
    "paid_tail_factor",
    "incurred_tail_factor",
    "cape_cod_elr",
    "bf_apriori_loss_ratio",
    "range_basis",
    "std_err",
    "cv",
    "p75",
    "p95",
]
QUANTILES = (0.75, 0.95)
LABELS = {
    "paid_cl": "paid chain ladder",
    "incurred_cl": "incurred chain ladder",
    "bf": "Bornhuetter-Ferguson",
    "cape_cod": "Cape Cod",
    MODEL: "ML model",
}


@dataclass(frozen=True)
class SegmentReserve:
    """One segment's methods: ``origins`` (one row per origin, ``ORIGIN_COLUMNS``) and ``summary`` (one row,
    ``SUMMARY_COLUMNS``)."""

    origins: pd.DataFrame
    summary: pd.DataFrame


def _tail(settings: Settings, basis: str):
    """The tail estimator of ``settings`` for the ``basis`` triangle, or None."""
    if settings.tail_method in ("exponential", "inverse_power"):
        # factors below 1 (incurred releasing case reserves) cannot be fitted on a log scale: left out of the fit
        return cl.TailCurve(curve=settings.tail_method, errors="ignore")
    if settings.tail_method == "constant":
        return cl.TailConstant(tail=getattr(settings, f"tail_constant_{basis}"))
    return None


def _develop(triangle: cl.Triangle, settings: Settings, basis: str) -> tuple[cl.Triangle, float]:
    """``triangle`` with fitted development factors and tail, and the tail factor (1 without a tail)."""
    developed = cl.Development().fit_transform(triangle)
    tail = _tail(settings, basis)
    if tail is None:
        return developed, 1.0
    with np.errstate(all="ignore"):
        fitted = tail.fit(developed)
    factor = float(np.asarray(fitted.tail_, dtype=float).ravel()[0])
    if not np.isfinite(factor) or factor < 1.0:
        # a curve through factors that are all at or below 1 says nothing is left to develop
        log.info("%s tail fit gave %s: no tail", basis, factor)
        return developed, 1.0
    return fitted.transform(developed), factor


def _by_origin(triangle: cl.Triangle) -> pd.Series:
    """A one-column, one-index triangle's last development column as a Series by origin (``datetime.date``)."""
    values = np.asarray(triangle.values, dtype=float)[0, 0, :, -1]
    return pd.Series(values, index=[o.date() for o in triangle.origin.to_timestamp()])


def _cdf_by_origin(developed: cl.Triangle, tail_factor: float, ages: pd.Series) -> pd.Series:
    """Cumulative development factor to ultimate (tail included) at each origin's latest age."""
    values = np.asarray(developed.cdf_.values, dtype=float).ravel()
    cdf = {int(str(label).split("-")[0]): float(v) for label, v in zip(developed.cdf_.development, values, strict=True)}
    # the oldest age has no factor of its own: what is left there is the tail
    cdf.setdefault(int(ages.max()), tail_factor)
    return ages.map(cdf).astype(float)


def _flags(ultimate: pd.Series, paid: pd.Series, incurred: pd.Series, label: str) -> pd.Series:
    below_incurred = np.where(ultimate < incurred - 0.005, f"{label}: ultimate<incurred", "")
    below_paid = np.where(ultimate < paid - 0.005, f"{label}: ultimate<paid", "")
    return pd.Series([[f for f in pair if f] for pair in zip(below_incurred, below_paid, strict=True)], ultimate.index)


def reserve_segment(
    cells: pd.DataFrame,
    settings: Settings | None = None,
    model_ultimates: pd.DataFrame | None = None,
    model_tail_included: bool = False,
) -> SegmentReserve:
    """Every method, the selection and the range for one segment's cells as at V.

    Parameters
    ----------
    cells : pandas.DataFrame
        Cells frame of a single segment (see :mod:`include.reserving.cells`), with paid, incurred and earned premium.
    settings : Settings, optional
        Tail, BF, Cape Cod, selection and range settings; :func:`load_settings` when omitted.
    model_ultimates : pandas.DataFrame, optional
        ``origin, ultimate`` from an ML model, shown in the ``model`` column (and selectable). A model projects to
        the oldest age the data shows; the column carries the line's paid tail on top (the tail is an assumption no
        backtest can test, so every paid projection gets the same one), unless ``model_tail_included``.
    model_tail_included : bool
        The model's ultimates already include a tail of its own (:meth:`ReservingModel.includes_tail`).

    Returns
    -------
    SegmentReserve
    """
    settings = settings or load_settings()
    cells = cellsmod.normalise(cells)
    segments = cells["segment"].unique()
    if len(segments) != 1:
        raise ValueError(f"reserve_segment takes one segment's cells, got {sorted(segments)}")
    segment = str(segments[0])
    latest = cellsmod.latest_diagonal(cells).set_index("origin")
    ages = latest["development"].astype(int)
    triangle = cellsmod.to_triangle(cells, columns=["paid", "incurred"])
    premium = latest["earned_premium"].astype(float)
    out = pd.DataFrame(
        {
            "segment": segment,
            "origin": latest.index,
            "maturity": ages.to_numpy(),
            "earned_premium": premium.to_numpy(),
            "paid": latest["paid"].astype(float).to_numpy(),
            "incurred": latest["incurred"].astype(float).to_numpy(),
        },
        index=latest.index,
    )
    if cellsmod.young_segments(cells):
        return _young(out, settings, model_ultimates)
    developed, tail_factor, cdf = {}, {}, {}
    # a part-elapsed origin develops on complete periods' factors, which take in the rest of its period's accidents:
    # its chain ladder reserves the elapsed share (the models' ultimates do the same; BF and Cape Cod already work on
    # the premium earned to date)
    elapsed = cellsmod.period_elapsed(cells).droplevel("segment").reindex(out.index)
    for basis in ("paid", "incurred"):
        developed[basis], tail_factor[basis] = _develop(triangle[basis], settings, basis)
        cdf[basis] = _cdf_by_origin(developed[basis], tail_factor[basis], ages)
        # chainladder's Chainladder is latest x CDF; zeros it stores as empty come back as zero here
        out[f"{basis}_cl"] = out[basis] * cdf[basis] * elapsed
        out[f"{basis}_tail_effect"] = out[f"{basis}_cl"] * (1 - 1 / tail_factor[basis])
        out[f"pct_developed_{basis}"] = 1 / cdf[basis]

    # BF and Cape Cod on earned premium, through chainladder's estimators
    basis = settings.expected_basis
    priced = bool((premium > 0).any())
    elr = apriori = np.nan
    if priced:
        premium_triangle = _premium_triangle(developed[basis], premium)
        cape_cod = cl.CapeCod(decay=settings.cape_cod_decay, trend=settings.cape_cod_trend).fit(
            developed[basis], sample_weight=premium_triangle
        )
        out["cape_cod"] = _by_origin(cape_cod.ultimate_).reindex(out.index).to_numpy()
        elr = float(np.nanmean(np.asarray(cape_cod.detrended_apriori_.values, dtype=float)))
        apriori = settings.bf_apriori_loss_ratio
        if apriori is None:
            mature = out["pct_developed_incurred"] >= settings.bf_apriori_maturity
            mature_premium = premium[mature].sum()
            apriori = float(out.loc[mature, "incurred_cl"].sum() / mature_premium) if mature_premium > 0 else elr
        bf = cl.BornhuetterFerguson(apriori=apriori).fit(developed[basis], sample_weight=premium_triangle)
        out["bf"] = _by_origin(bf.ultimate_).reindex(out.index).to_numpy()
        for method in ("bf", "cape_cod"):
            # an origin without premium has no expected ultimate: its chain ladder stands in
            out[method] = out[method].fillna(out[f"{basis}_cl"])
    else:  # a segment without premium (below line level) has neither: n/a, not a copy of the chain ladder
        out["bf"] = out["cape_cod"] = np.nan
    _model_column(out, model_ultimates, 1.0 if model_tail_included else tail_factor["paid"])
    _select(out, settings)
    _reserves_and_flags(out)
    origin_std_err, std_err = _mack_std_err(developed[settings.range_basis])
    out["std_err"] = origin_std_err.reindex(out.index).to_numpy()
    out["p75"], out["p95"] = reserve_percentiles(
        out["unpaid"].to_numpy(float), out["std_err"].to_numpy(float), QUANTILES
    )
    origins = out.reset_index(drop=True)[ORIGIN_COLUMNS]

    summary = _summary(origins).assign(
        segment=segment,
        selection_rule=describe_rule(settings, priced=priced),
        tail_method=settings.tail_method,
        paid_tail_factor=tail_factor["paid"],
        incurred_tail_factor=tail_factor["incurred"],
        cape_cod_elr=elr,
        bf_apriori_loss_ratio=apriori,
        range_basis=f"Mack, {settings.range_basis} chain ladder",
        std_err=std_err,
    )
    return SegmentReserve(origins, with_range(summary, settings)[SUMMARY_COLUMNS])


def _summary(origins: pd.DataFrame) -> pd.DataFrame:
    """One row: the segment's sums of the origins' amounts, its unpaid, case reserves and IBNR."""
    summary = origins[["paid", "incurred", "earned_premium", *METHODS, MODEL, "selected_ultimate"]].sum(min_count=1)
    summary["unpaid"] = summary["selected_ultimate"] - summary["paid"]
    summary["case_reserves"] = summary["incurred"] - summary["paid"]
    summary["ibnr"] = summary["selected_ultimate"] - summary["incurred"]
    return pd.DataFrame([summary])


def _model_column(out: pd.DataFrame, model_ultimates: pd.DataFrame | None, tail_factor: float = 1.0) -> None:
    out[MODEL] = np.nan
    if model_ultimates is not None:
        model = model_ultimates.assign(origin=[pd.Timestamp(o).date() for o in model_ultimates["origin"]])
        out[MODEL] = model.set_index("origin")["ultimate"].astype(float).reindex(out.index) * tail_factor


def _reserves_and_flags(out: pd.DataFrame) -> None:
    out["unpaid"] = out["selected_ultimate"] - out["paid"]
    out["case_reserves"] = out["incurred"] - out["paid"]
    out["ibnr"] = out["selected_ultimate"] - out["incurred"]
    flags = [_flags(out[m], out["paid"], out["incurred"], m) for m in [*METHODS, MODEL] if out[m].notna().any()]
    flags.append(_flags(out["selected_ultimate"], out["paid"], out["incurred"], "selected"))
    out["flags"] = ["; ".join(sum(parts, [])) for parts in zip(*flags, strict=True)]


YOUNG_RULE = "too young for development factors of its own: the model's ultimate (factors borrowed from the book)"


def _young(out: pd.DataFrame, settings: Settings, model_ultimates: pd.DataFrame | None) -> SegmentReserve:
    """A segment whose cells are all at one age (a new line): no method can develop it on its own, so the model's
    ultimates (factors borrowed from the rest of the book) are selected, without a range."""
    if model_ultimates is None:
        raise ValueError(f"segment {out['segment'].iloc[0]!r} is too young for the methods: pass the model's ultimates")
    for column in (
        *METHODS,
        "paid_tail_effect",
        "incurred_tail_effect",
        "pct_developed_paid",
        "pct_developed_incurred",
    ):
        out[column] = np.nan
    _model_column(out, model_ultimates)
    out["selected_ultimate"] = out[MODEL]
    out["selected_method"] = MODEL
    out["rationale"] = YOUNG_RULE
    _reserves_and_flags(out)
    out["std_err"] = out["p75"] = out["p95"] = np.nan
    origins = out.reset_index(drop=True)[ORIGIN_COLUMNS]
    summary = _summary(origins).assign(
        segment=out["segment"].iloc[0],
        selection_rule=YOUNG_RULE,
        tail_method=settings.tail_method,
        paid_tail_factor=np.nan,
        incurred_tail_factor=np.nan,
        cape_cod_elr=np.nan,
        bf_apriori_loss_ratio=np.nan,
        range_basis="none (too young)",
        std_err=np.nan,
    )
    return SegmentReserve(origins, with_range(summary, settings)[SUMMARY_COLUMNS])


def _premium_triangle(developed: cl.Triangle, premium: pd.Series) -> cl.Triangle:
    """Earned premium per origin as a latest-diagonal triangle shaped like ``developed``'s (chainladder's
    ``sample_weight``)."""
    weight = developed.latest_diagonal
    origins = [o.date() for o in weight.origin.to_timestamp()]
    weight.values = np.asarray(premium.reindex(origins), dtype=float).reshape(weight.values.shape)
    return weight


def _mack_std_err(developed: cl.Triangle) -> tuple[pd.Series, float]:
    """Mack's standard error of the chain ladder unpaid per origin, and of the total (which is more than the
    quadrature sum of the origins': every origin shares the estimated factors)."""
    with np.errstate(all="ignore"):
        mack = cl.MackChainladder().fit(developed)
    per_origin = np.asarray(mack.mack_std_err_.values, dtype=float)[0, 0, :, -1]
    origins = [o.date() for o in mack.mack_std_err_.origin.to_timestamp()]
    total = float(np.asarray(mack.total_mack_std_err_, dtype=float).ravel()[0])
    # On a thin triangle Mack's variance estimate can explode (1e33, inf): that is no range, and it would not even
    # fit the warehouse's money columns. Beyond this bound the error is reported as unknown (NaN).
    ultimate = np.asarray(mack.ultimate_.values, dtype=float)[0, 0, :, -1]
    bound = RANGE_SANITY_FACTOR * max(float(np.nansum(np.abs(ultimate))), 1.0)
    absurd = ~np.isfinite(per_origin) | (np.abs(per_origin) > bound)
    if absurd.any():
        log.warning(
            "Mack standard error not usable for %d origins (non-finite or above %.0fx the ultimate): reported as n/a",
            int(absurd.sum()),
            RANGE_SANITY_FACTOR,
        )
    per_origin = np.where(absurd, np.nan, per_origin)
    if not np.isfinite(total) or abs(total) > bound:
        total = float("nan")
    return pd.Series(per_origin, index=origins), total


def with_range(summary: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """``summary`` with the CV and lognormal percentiles of the unpaid; no CV where the unpaid is near zero."""
    out = summary.copy()
    unpaid, std_err = out["unpaid"].to_numpy(float), out["std_err"].to_numpy(float)
    material = np.abs(unpaid) >= settings.cv_floor * np.maximum(np.abs(out["paid"].to_numpy(float)), 1.0)
    out["cv"] = np.where(material, std_err / np.where(material, unpaid, 1.0), np.nan)
    out["p75"], out["p95"] = reserve_percentiles(unpaid, std_err, QUANTILES)
    return out


NEEDS_PREMIUM = ("bf", "cape_cod")
NO_SEGMENT_PREMIUM = (
    "; no earned premium for this segment (earned_exposure is per line of business; segment_by cuts below it), so "
    "the {basis} chain ladder instead of {method}"
)


def describe_rule(settings: Settings, priced: bool = True) -> str:
    """The selection rule in words, as the report states it; ``priced`` False: the segment has no earned premium,
    and the rule says what stands in for a method that needs it."""
    basis = settings.expected_basis
    if settings.selection_rule == "maturity":
        rule = (
            f"{basis} chain ladder where at least {settings.selection_maturity:.0%} developed on the {basis} "
            f"pattern, else {LABELS[settings.selection_immature_method]}"
        )
        wanted = settings.selection_immature_method
    else:
        rule = f"{LABELS[settings.selection_rule]} for every origin"
        wanted = settings.selection_rule
    if not priced and wanted in NEEDS_PREMIUM:
        rule += NO_SEGMENT_PREMIUM.format(basis=basis, method=LABELS[wanted])
    return rule


def _select(out: pd.DataFrame, settings: Settings) -> None:
    """Set ``selected_ultimate``, ``selected_method`` and ``rationale`` on ``out`` by the settings' rule."""
    basis, threshold = settings.expected_basis, settings.selection_maturity
    if settings.selection_rule == "maturity":
        pct = out[f"pct_developed_{basis}"]
        mature = pct >= threshold
        immature = settings.selection_immature_method
        method = np.where(mature, f"{basis}_cl", immature)
        rationale = [
            f"{p:.0%} developed on {basis} >= {threshold:.0%}: its chain ladder"
            if m
            else f"{p:.0%} developed on {basis} < {threshold:.0%}: {LABELS[immature]} on premium"
            for p, m in zip(pct, mature, strict=True)
        ]
    else:
        method = np.full(len(out), settings.selection_rule, dtype=object)
        rationale = [f"rule: {LABELS[settings.selection_rule]} for every origin"] * len(out)
    chosen = pd.Series(method, index=out.index)
    # BF and Cape Cod develop premium: without it (a segment below line level, an origin without exposure) the
    # chain ladder stands in under its own name
    unpriced = chosen.isin(NEEDS_PREMIUM) & ~(out["earned_premium"] > 0)
    if unpriced.any():
        stand_in = f"{basis}_cl"
        rationale = [
            r + f"; no earned premium: {LABELS[stand_in]} instead" if u else r
            for r, u in zip(rationale, unpriced, strict=True)
        ]
        chosen[unpriced] = stand_in
    values = out[[*METHODS, MODEL]]
    selected = np.array([values.at[i, m] for i, m in chosen.items()], dtype=float)
    # a model without an ultimate for an origin cannot be selected there: incurred CL stands in, and says so
    missing = np.isnan(selected)
    if missing.any():
        selected[missing] = out["incurred_cl"].to_numpy()[missing]
        chosen[missing] = "incurred_cl"
        rationale = [r + "; no value, incurred CL instead" if m else r for r, m in zip(rationale, missing, strict=True)]
    out["selected_ultimate"] = selected
    out["selected_method"] = chosen.to_numpy()
    out["rationale"] = rationale


def reserve_book(
    cells: pd.DataFrame,
    settings: Settings | None = None,
    model_ultimates: pd.DataFrame | None = None,
    model_tail_included: bool = False,
) -> SegmentReserve:
    """:func:`reserve_segment` for every segment of ``cells``, concatenated (``model_ultimates`` with ``segment``)."""
    settings = settings or load_settings()
    parts = []
    for segment, seg_cells in cellsmod.normalise(cells).groupby("segment", sort=True):
        model = None
        if model_ultimates is not None:
            model = model_ultimates[model_ultimates["segment"] == segment]
        parts.append(reserve_segment(seg_cells, settings, model, model_tail_included))
    return SegmentReserve(
        pd.concat([p.origins for p in parts], ignore_index=True),
        pd.concat([p.summary for p in parts], ignore_index=True),
    )


def total_range(summary: pd.DataFrame, settings: Settings | None = None) -> pd.DataFrame:
    """The total over lines of a per-line summary, its standard error assuming the lines independent.

    Independence understates the total's range where lines move together (shared inflation, a court ruling);
    it is the stated assumption until correlations are estimated.
    """
    settings = settings or load_settings()
    totals = summary[["paid", "incurred", "earned_premium", *METHODS, MODEL, "selected_ultimate"]].sum(min_count=1)
    totals["unpaid"] = summary["unpaid"].sum()
    totals["case_reserves"] = summary["case_reserves"].sum()
    totals["ibnr"] = summary["ibnr"].sum()
    totals["std_err"] = float(np.sqrt((summary["std_err"] ** 2).sum()))
    out = pd.DataFrame([totals]).assign(segment="Total", correlation="independent lines")
    return with_range(out, settings)
