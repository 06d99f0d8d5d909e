"""The analysis of change per line of business, and when a movement is beyond the hold tolerance (pure).

From the previous current publication at V-1 to this month's rows, per line, each step in money rounded to the cent:

    previous unpaid
    - actual emergence        paid in the month on the origins that existed at V-1
    + new origin periods      this unpaid on origins absent at V-1
    + change of model         on the origins of V-1: the new model's unpaid less the previous model's on V's data
    + experience and other    the balancing item (exact to the cent)
    = this unpaid

and two memo rows: the expected emergence (what the reserve published at V-1 expected to be paid in the month on the
origins of V-1, emerging on the previous model's pattern) and actual / expected emergence. The unpaid is the
published ``unpaid`` column: ultimate less paid, i.e. case reserves plus IBNR (paid emergence moves it, a case
reserve movement alone does not).
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pandas as pd

from include.reserving.cells import ULTIMATE_DEVELOPMENT

OPENING, MOVEMENT, CLOSING, MEMO = "opening", "movement", "closing", "memo"
PREVIOUS = "previous unpaid"
ACTUAL = "actual emergence (paid in the month)"
NEW_ORIGINS = "new origin periods"
MODEL_CHANGE = "change of model"
OTHER = "experience and other"
THIS = "this unpaid"
EXPECTED = "memo: expected emergence"
AE = "memo: actual / expected emergence"
STEPS = (
    (1, PREVIOUS, OPENING),
    (2, ACTUAL, MOVEMENT),
    (3, NEW_ORIGINS, MOVEMENT),
    (4, MODEL_CHANGE, MOVEMENT),
    (5, OTHER, MOVEMENT),
    (6, THIS, CLOSING),
    (7, EXPECTED, MEMO),
    (8, AE, MEMO),
)
COLUMNS = ["segment", "step_order", "step", "kind", "amount", "ratio", "note"]
NO_PREVIOUS_NOTE = "no previous publication at V-1 (first month): no movement to analyse"
MODEL_NOT_SEPARATED = (
    "the previous model cannot be applied to V's data (e.g. its development ages differ a month on): its effect is in "
    "experience and other"
)
SAME_MODEL = "same model version as at V-1"
LINE_MISSING = "the line has no rows this month"
EXPECTED_NOTE = (
    "the unpaid published at V-1 times the share of it the previous model projected to the next age, pro rata for "
    "one month"
)
CENT = Decimal("0.01")


def cents(value: Any) -> Decimal:
    """Money as an exact Decimal rounded to the cent, half away from zero; NaN/None count as zero."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return Decimal(0)
    return Decimal(repr(float(value))).quantize(CENT, rounding=ROUND_HALF_UP)


def expected_emergence(
    prediction: pd.DataFrame, published: pd.DataFrame | None = None, months: int = 1, grain_months: int = 3
) -> pd.DataFrame:
    """What the previous month's reserve expected to be paid in the next ``months`` month(s), per segment and origin.

    ``prediction`` is the previous model's completed square on V-1's cells (``segment, origin, development, paid,
    observed``). For each origin, the increment from its latest observed paid to the next projected age is spread
    evenly over the months between the two ages (to ultimate: over one development period of ``grain_months``).
    An approximation: a payment pattern within a development period is not known, so it is taken as flat.

    ``published`` (``segment, origin, unpaid``: the reserve published at V-1) puts that increment on the published
    reserve: the share of the projected unpaid the model expects in the month, times the published unpaid. What
    was signed off is the selected reserve (BF where the model's chain ladder multiplies a month's noise), so that is
    what the month's payments are measured against; the model only says how fast it emerges.
    """
    reserve = {} if published is None else published.set_index(["segment", "origin"])["unpaid"].to_dict()
    out = []
    for (segment, origin), group in prediction.groupby(["segment", "origin"], sort=True):
        observed = group[group["observed"]]
        if observed.empty:
            continue
        latest = observed.loc[observed["development"].idxmax()]
        ahead = group[group["development"] > latest["development"]].sort_values("development")
        if ahead.empty:
            out.append((segment, origin, 0.0))
            continue
        following = ahead.iloc[0]
        gap = (
            grain_months
            if following["development"] == ULTIMATE_DEVELOPMENT
            else following["development"] - latest["development"]
        )
        share = min(1.0, months / max(float(gap), 1.0))
        step = float(following["paid"]) - float(latest["paid"])
        if (segment, origin) in reserve:
            remaining = float(ahead["paid"].iloc[-1]) - float(latest["paid"])
            unpaid = max(float(reserve[(segment, origin)]), 0.0)
            step = step / remaining * unpaid if remaining > 0 else 0.0
        out.append((segment, origin, step * share))
    return pd.DataFrame(out, columns=["segment", "origin", "expected_emergence"])


def _by_origin(frame: pd.DataFrame | None, column: str) -> dict[tuple[str, Any], Decimal]:
    if frame is None or frame.empty:
        return {}
    # origins as plain dates: the warehouse, the artifacts and the models hand them over as dates or timestamps
    origins = pd.to_datetime(frame["origin"]).dt.date
    return {(s, o): cents(v) for s, o, v in zip(frame["segment"], origins, frame[column], strict=True)}


def analysis_of_change(
    current: pd.DataFrame,
    previous: pd.DataFrame | None,
    expected: pd.DataFrame | None = None,
    previous_model_on_current: pd.DataFrame | None = None,
    model_changed: bool | Collection[str] = False,
    no_previous_note: str = NO_PREVIOUS_NOTE,
) -> pd.DataFrame:
    """The analysis of change per line (``COLUMNS``), amounts to the cent; the movement rows tie exactly.

    Parameters
    ----------
    current, previous : pandas.DataFrame
        Published rows at V and at V-1 (``segment, origin, latest_paid, unpaid``); ``previous`` None: first month.
    expected : pandas.DataFrame, optional
        :func:`expected_emergence` of the previous projection (``segment, origin, expected_emergence``).
    previous_model_on_current : pandas.DataFrame, optional
        The previous model's rows on V's data (``segment, origin, unpaid``) when the model changed; None when it could
        not be computed (its effect then stays in experience and other, and the note says so).
    model_changed : bool or collection of str
        The lines V reserves with another model version than V-1 (each line has its own champion); True: every line.
    no_previous_note : str
        Why there is no previous publication to compare with (``previous`` None).
    """
    this_unpaid = _by_origin(current, "unpaid")
    this_paid = _by_origin(current, "latest_paid")
    segments = sorted(set(current["segment"]) | (set(previous["segment"]) if previous is not None else set()))
    rows: list[tuple] = []
    if previous is None:
        for segment in segments:
            this = sum((v for (s, _), v in this_unpaid.items() if s == segment), Decimal(0))
            rows.append((segment, 1, PREVIOUS, OPENING, None, None, no_previous_note))
            rows.append((segment, 6, THIS, CLOSING, this, None, None))
        return _frame(rows)
    this_segments = set(current["segment"])
    prev_unpaid = _by_origin(previous, "unpaid")
    prev_paid = _by_origin(previous, "latest_paid")
    expected_by = _by_origin(expected, "expected_emergence") if expected is not None else None
    prev_model = _by_origin(previous_model_on_current, "unpaid") if previous_model_on_current is not None else None
    for segment in segments:
        old = [k for k in prev_unpaid if k[0] == segment]
        new = [k for k in this_unpaid if k[0] == segment and k not in prev_unpaid]
        kept = [k for k in old if k in this_unpaid]
        opening = sum((prev_unpaid[k] for k in old), Decimal(0))
        closing = sum((v for (s, _), v in this_unpaid.items() if s == segment), Decimal(0))
        actual = sum((this_paid[k] - prev_paid[k] for k in kept), Decimal(0))
        new_origins = sum((this_unpaid[k] for k in new), Decimal(0))
        if not (model_changed if isinstance(model_changed, bool) else segment in model_changed):
            model_change, model_note = Decimal(0), SAME_MODEL
        elif prev_model is None or any(k not in prev_model for k in kept):
            model_change, model_note = Decimal(0), MODEL_NOT_SEPARATED
        else:
            model_change, model_note = sum((this_unpaid[k] - prev_model[k] for k in kept), Decimal(0)), None
        other = closing - (opening - actual + new_origins + model_change)
        rows += [
            (segment, 1, PREVIOUS, OPENING, opening, None, None),
            (segment, 2, ACTUAL, MOVEMENT, -actual, None, None),
            (segment, 3, NEW_ORIGINS, MOVEMENT, new_origins, None, None),
            (segment, 4, MODEL_CHANGE, MOVEMENT, model_change, None, model_note),
            (segment, 5, OTHER, MOVEMENT, other, None, None),
            (segment, 6, THIS, CLOSING, closing, None, None if segment in this_segments else LINE_MISSING),
        ]
        if expected_by is not None:
            expected_amount = sum((expected_by.get(k, Decimal(0)) for k in kept), Decimal(0))
            ratio = float(actual / expected_amount) if expected_amount > 0 else None
            rows.append((segment, 7, EXPECTED, MEMO, expected_amount, None, EXPECTED_NOTE))
            rows.append((segment, 8, AE, MEMO, None, ratio, None if ratio is not None else "no expected emergence"))
    return _frame(rows)


def _frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["amount"] = [None if a is None else float(a) for a in frame["amount"]]
    frame["amount"] = frame["amount"].astype(float)
    frame["ratio"] = frame["ratio"].astype(float)
    return frame


def ties(aoc: pd.DataFrame) -> bool:
    """Whether, on every line with a previous publication, opening + movements = closing to the cent."""
    for _, rows in aoc.groupby("segment"):
        opening = rows.loc[rows["kind"] == OPENING, "amount"]
        if opening.isna().all():
            continue
        total = sum((cents(a) for a in rows.loc[rows["kind"].isin([OPENING, MOVEMENT]), "amount"]), Decimal(0))
        if total != cents(rows.loc[rows["kind"] == CLOSING, "amount"].iloc[0]):
            return False
    return True


def line_summary(aoc: pd.DataFrame) -> pd.DataFrame:
    """One row per line: previous, this, other, expected, actual emergence and A/E (NaN where not known)."""
    wide = aoc.pivot_table(index="segment", columns="step", values="amount", aggfunc="first", dropna=False)
    ratio = aoc[aoc["step"] == AE].set_index("segment")["ratio"]
    out = pd.DataFrame(index=sorted(aoc["segment"].unique()))
    for column, step in (("previous", PREVIOUS), ("this", THIS), ("other", OTHER), ("expected", EXPECTED)):
        out[column] = wide[step].reindex(out.index).astype(float) if step in wide else np.nan
    out["actual"] = -wide[ACTUAL].reindex(out.index).astype(float) if ACTUAL in wide else np.nan
    out["ae"] = ratio.reindex(out.index).astype(float)
    return out.rename_axis("segment").reset_index()


def _money(value: float) -> str:
    return f"{value:,.2f}"


def hold_reasons(aoc: pd.DataFrame, settings: Any) -> list[str]:
    """Why this month's numbers must be signed off before they become current: one sentence per breach, naming the
    line, what moved, by how much and the tolerance. Empty when nothing is beyond tolerance or there is no previous
    publication (first month)."""
    floor = settings.hold_floor
    reasons = []
    closing = aoc[aoc["kind"] == CLOSING]
    for row in line_summary(aoc).itertuples(index=False):
        if np.isnan(row.previous):
            continue
        if (closing.loc[closing["segment"] == row.segment, "note"] == LINE_MISSING).any():
            previous = _money(row.previous)
            reasons.append(
                f"{row.segment}: published at the previous month end with unpaid {previous}, but {LINE_MISSING}"
            )
            continue
        previous, movement = abs(row.previous), row.this - row.previous
        limit = max(floor, settings.hold_movement_tolerance * previous)
        if abs(movement) > limit:
            reasons.append(
                f"{row.segment}: unpaid moved {movement:+,.2f} from {_money(row.previous)} to "
                f"{_money(row.this)}, beyond the hold tolerance of {_money(limit)} "
                f"(max(hold_floor, hold_movement_tolerance {settings.hold_movement_tolerance:g} x previous))"
            )
        factor = settings.hold_ae_factor
        if not np.isnan(row.expected) and row.expected > floor and not np.isnan(row.ae):
            if not (1 / factor <= row.ae <= factor):
                reasons.append(
                    f"{row.segment}: actual / expected emergence {row.ae:.2f} (paid {_money(row.actual)} against "
                    f"{_money(row.expected)} expected) is outside [{1 / factor:.2f}, {factor:.2f}] "
                    f"(hold_ae_factor {factor:g})"
                )
        limit = max(floor, settings.hold_unexplained_tolerance * previous)
        if not np.isnan(row.other) and abs(row.other) > limit:
            reasons.append(
                f"{row.segment}: unexplained movement (experience and other) {row.other:+,.2f} is beyond "
                f"{_money(limit)} (max(hold_floor, hold_unexplained_tolerance "
                f"{settings.hold_unexplained_tolerance:g} x previous))"
            )
    return reasons
