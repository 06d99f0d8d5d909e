"""May this run value V now? Pure rules (no Airflow, no SQL): a stale book is not valued, and a month is not
published over a later current valuation on the same basis unless the run says it means to.

Why: unpausing the DAG starts the run of the last closed month, whatever the book holds. Against an extract that
ended long before, that run would value a month with no activity and publish it as current; a run for an earlier
month would then publish "under" it, and the analysis of change of later months would compare against the wrong
month. Both refusals happen in ``input.run_order``, before anything is ingested; the later-valuation one again at
publication, under the publication lock (a backfill may have published a later month meanwhile).
"""

from __future__ import annotations

import datetime as dt

# DagRunType.BACKFILL's value (Airflow's enum is a str enum: a plain string keeps this module free of Airflow)
BACKFILL = "backfill"
RERUN_PARAM = "rerun_earlier_month"


class RunOrderError(RuntimeError):
    """The run refuses to value V (a stale book, or a later valuation already current); nothing was published."""


def exemption(run_type: str | None, restated: bool, rerun_earlier_month: bool) -> str | None:
    """Why this run may publish V over a later current valuation, or None when it may not: an explicit backfill,
    a restatement, or the ``rerun_earlier_month`` param."""
    if str(run_type or "") == BACKFILL:
        return "a backfill"
    if restated:
        return "a restatement (restated)"
    if rerun_earlier_month:
        return f"an intentional re-run ({RERUN_PARAM})"
    return None


def later_valuation_refusal(valuation_date: dt.date, basis: str, later: dt.date | None) -> str | None:
    """The refusal's message when ``later`` (the latest current valuation after V on ``basis``) exists, else None."""
    if later is None:
        return None
    return (
        f"refusing to value {valuation_date} ({basis}): a later valuation, {later}, is already current on the same "
        f"basis, and publishing {valuation_date} now would put an earlier month's numbers after it. If you mean "
        f"to value {valuation_date} again, run it as a backfill (airflow backfill create ... --from-date "
        f"{valuation_date:%Y-%m-01} --to-date {valuation_date}), as a restatement (param restated), or trigger it "
        f"with the param {RERUN_PARAM}=true. If {later} was valued by mistake (e.g. the run that unpausing the DAG "
        "starts), this run is right to stop: nothing was published"
    )


def book_ends_before(exposure_rows: int, last_exposure: str | None) -> str | None:
    """Why the extract ends before V's month (no earned_exposure row for it), or None. A book still paying claims
    off (and reporting late claims) shows transactions years after its last policy month: the exposure tells."""
    if exposure_rows:
        return None
    return f"no earned_exposure row for the month: the book's earned exposure ends with {last_exposure or 'no month'}"


def stale_book_refusal(valuation_date: dt.date, basis: str, why: str) -> str:
    """The refusal's message for a book that shows no activity in V's month (``why``: the failed
    ``extract_stalled`` check, explained, or :func:`book_ends_before`)."""
    # a month's rows arrive by recorded_at (as recorded) or transaction_date (restated): wrong values there look
    # exactly like a stalled feed
    arrival = "recorded_at" if basis == "as_recorded" else "transaction_date"
    return (
        f"refusing to value {valuation_date} ({basis}): the book shows no activity in the month ({why}). "
        "A run started by unpausing the DAG values the last closed month: to value an earlier month, trigger a run "
        f"with the param valuation_date (a month end). If the month's rows are in the extract, check their "
        f"{arrival} (a row belongs to the month it was {'recorded' if arrival == 'recorded_at' else 'dated'} in). "
        "Nothing was ingested or published"
    )
