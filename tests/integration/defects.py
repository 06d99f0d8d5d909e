"""A catalogue of ways a month's extract goes wrong, one function per defect kind.

Each defect damages the source tables of a warehouse whose previous month end is cleanly published; the month in
question is ``Month`` (its first day, its end V, and V + 1 day, before which the as-recorded snapshot reads). The
catalogue covers kinds, not cases: schema (renamed, missing, retyped columns; a table gone; keys broken), rows the
row-level gate sees, and months that are wrong only as a whole (units, volumes, lines, premium, a stalled feed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Column, MetaData, Table, Text, text
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from include.reserving import schema


@dataclass(frozen=True)
class Month:
    start: dt.date
    end: dt.date

    @property
    def after(self) -> dt.date:
        return self.end + dt.timedelta(days=1)


@dataclass(frozen=True)
class Defect:
    name: str
    apply: Callable[[Connection, Month], None]
    names: tuple[str, ...] = ()  # words the operator must read in the error (case-insensitive)
    dialects: tuple[str, ...] = ("sqlite", "postgresql")


def _run(conn: Connection, statement: str) -> None:
    conn.execute(text(statement))  # text(): percent signs in LIKE patterns reach every driver as written


def rebuild(conn: Connection, table: Table, types: dict[str, TypeEngine] | None = None, select: dict | None = None):
    """Re-create ``table`` as a raw extract would be: no keys, no NOT NULL, ``types`` overriding column types and
    ``select`` overriding the expression each column is copied from."""
    types, select = types or {}, select or {}
    new = Table(f"{table.name}__rebuilt", MetaData(), *[Column(c.name, types.get(c.name, c.type)) for c in table.c])
    new.create(conn)
    exprs = ", ".join(select.get(c.name, f'"{c.name}"') for c in table.c)
    _run(conn, f'INSERT INTO "{new.name}" SELECT {exprs} FROM "{table.name}"')
    _run(conn, f'DROP TABLE "{table.name}"')
    _run(conn, f'ALTER TABLE "{new.name}" RENAME TO "{table.name}"')


def _month_rows(month: Month) -> str:
    """The month's transactions: recorded in the month (what the as-recorded extract adds at V)."""
    return f"recorded_at >= '{month.start}' AND recorded_at < '{month.after}'"


def _reported_in(month: Month) -> str:
    """The month's new claims: reported in the month."""
    return f"report_date >= '{month.start}' AND report_date <= '{month.end}'"


def _copy_transactions(conn: Connection, where: str, copies: int, id_suffix: str, scale_step: float) -> None:
    """Add ``copies`` copies of the matching transactions with new ids, amounts nudged so no row is a duplicate."""
    for k in range(1, copies + 1):
        factor = 1 + scale_step * k
        _run(
            conn,
            "INSERT INTO claim_transactions (transaction_id, claim_id, transaction_date, recorded_at, paid_amount, "
            f"case_reserve_change, status) SELECT transaction_id || '{id_suffix}{k}', claim_id, transaction_date, "
            f"recorded_at, ROUND(paid_amount * {factor}, 2), ROUND(case_reserve_change * {factor}, 2), status "
            f"FROM claim_transactions WHERE {where} AND transaction_id NOT LIKE '%{id_suffix}%'",
        )


# --- schema and keys: the contract check ---------------------------------------------------------------------------


def renamed_column(conn, month):
    _run(conn, 'ALTER TABLE claim_transactions RENAME COLUMN paid_amount TO "PaidAmount"')


def missing_column(conn, month):
    _run(conn, "ALTER TABLE claims DROP COLUMN report_date")


def missing_table(conn, month):
    _run(conn, "DROP TABLE earned_exposure")


def amounts_as_text(conn, month):
    as_text = {"paid_amount": "CAST(paid_amount AS TEXT)"}
    rebuild(conn, schema.claim_transactions, types={"paid_amount": Text()}, select=as_text)
    _run(
        conn,
        f"UPDATE claim_transactions SET paid_amount = '1,234.50' WHERE {_month_rows(month)} AND paid_amount <> '0'",
    )


def dates_as_text(conn, month):
    as_text = {"accident_date": "CAST(accident_date AS TEXT)"}
    rebuild(conn, schema.claims, types={"accident_date": Text()}, select=as_text)
    _run(conn, f"UPDATE claims SET accident_date = '31/10/2024' WHERE {_reported_in(month)}")


def claim_with_two_accident_dates(conn, month):
    rebuild(conn, schema.claims)
    _run(
        conn,
        "INSERT INTO claims SELECT claim_id, policy_id, line_of_business, claim_type, report_date, report_date, "
        f"claimant_age, region FROM claims WHERE {_reported_in(month)} "
        "AND accident_date < report_date",
    )


def claim_in_two_lines(conn, month):
    rebuild(conn, schema.claims)
    _run(
        conn,
        "INSERT INTO claims SELECT claim_id, policy_id, CASE WHEN line_of_business = 'Motor' THEN 'Property' "
        "ELSE 'Motor' END, claim_type, accident_date, report_date, claimant_age, region FROM claims "
        f"WHERE {_reported_in(month)}",
    )


def null_line_of_business(conn, month):
    rebuild(conn, schema.claims)
    _run(conn, f"UPDATE claims SET line_of_business = NULL WHERE {_reported_in(month)}")


def null_claim_id_in_claims(conn, month):
    rebuild(conn, schema.claims)
    _run(
        conn,
        "INSERT INTO claims SELECT NULL, policy_id, line_of_business, claim_type, accident_date, report_date, "
        f"claimant_age, region FROM claims WHERE {_reported_in(month)}",
    )


def null_recorded_at(conn, month):
    rebuild(conn, schema.claim_transactions)
    _run(conn, f"UPDATE claim_transactions SET recorded_at = NULL WHERE {_month_rows(month)}")


# --- rows: the Great Expectations gate -------------------------------------------------------------------------


def null_transaction_claim_id(conn, month):
    _run(
        conn,
        f"UPDATE claim_transactions SET claim_id = NULL WHERE transaction_id IN (SELECT transaction_id FROM "
        f"claim_transactions WHERE {_month_rows(month)} ORDER BY transaction_id LIMIT 3)",
    )


def future_dated_rows(conn, month):
    _run(
        conn,
        f"UPDATE claim_transactions SET transaction_date = '{month.end + dt.timedelta(days=20)}' WHERE "
        f"transaction_id IN (SELECT transaction_id FROM claim_transactions WHERE {_month_rows(month)} "
        "ORDER BY transaction_id LIMIT 5)",
    )


def duplicate_transaction_ids(conn, month):
    _run(
        conn,
        "INSERT INTO claim_transactions SELECT transaction_id, claim_id, transaction_date, recorded_at, "
        f"paid_amount + 1, case_reserve_change, status FROM claim_transactions WHERE {_month_rows(month)} "
        "AND paid_amount > 0",
    )


def amount_out_of_bounds(conn, month):
    _run(
        conn,
        "UPDATE claim_transactions SET paid_amount = 987654321.00 WHERE transaction_id IN (SELECT transaction_id "
        f"FROM claim_transactions WHERE {_month_rows(month)} AND paid_amount > 0 ORDER BY transaction_id LIMIT 1)",
    )


def unknown_claim_type(conn, month):
    _run(conn, f"UPDATE claims SET claim_type = 'Cyber' WHERE {_reported_in(month)}")


def orphan_transactions(conn, month):
    _run(
        conn,
        "INSERT INTO claim_transactions SELECT transaction_id || '-orphan', 'NO-SUCH-CLAIM', transaction_date, "
        f"recorded_at, paid_amount, case_reserve_change, status FROM claim_transactions WHERE {_month_rows(month)} "
        "AND paid_amount > 0",
    )


def report_before_accident(conn, month):
    _run(
        conn,
        f"UPDATE claims SET accident_date = '{month.end}', report_date = '{month.start}' WHERE claim_id IN "
        f"(SELECT claim_id FROM claims WHERE {_reported_in(month)} "
        "ORDER BY claim_id LIMIT 3)",
    )


def claimant_age_out_of_range(conn, month):
    _run(conn, f"UPDATE claims SET claimant_age = 140 WHERE {_reported_in(month)}")


def double_postings(conn, month):
    _run(
        conn,
        "INSERT INTO claim_transactions SELECT transaction_id || '-dup', claim_id, transaction_date, recorded_at, "
        f"paid_amount, case_reserve_change, status FROM claim_transactions WHERE {_month_rows(month)} "
        "AND paid_amount > 0",
    )


def empty_extract(conn, month):
    _run(conn, "DELETE FROM claim_transactions")
    _run(conn, "DELETE FROM claims")


def injection_string(conn, month):
    _run(
        conn,
        "INSERT INTO claim_transactions SELECT transaction_id || '-x', 'x''); DROP TABLE claims; --', "
        f"transaction_date, recorded_at, paid_amount, case_reserve_change, status FROM claim_transactions WHERE "
        f"{_month_rows(month)} AND paid_amount > 0",
    )


# --- the month as a whole: plausibility, reconciliation, the reserve-movement hold ---------------------------------


def one_line_in_cents(conn, month):
    _run(
        conn,
        "UPDATE claim_transactions SET paid_amount = paid_amount * 100, "
        "case_reserve_change = case_reserve_change * 100 "
        f"WHERE {_month_rows(month)} AND claim_id IN (SELECT claim_id FROM claims WHERE line_of_business = 'Motor')",
    )


def ten_times_the_transactions(conn, month):
    _copy_transactions(conn, _month_rows(month), copies=9, id_suffix="-x", scale_step=0.001)


def ten_times_the_new_claims(conn, month):
    new_claims = f"{_reported_in(month)}"
    for k in range(1, 10):
        _run(
            conn,
            f"INSERT INTO claims SELECT claim_id || '-n{k}', policy_id, line_of_business, claim_type, accident_date, "
            f"report_date, claimant_age, region FROM claims WHERE {new_claims} AND claim_id NOT LIKE '%-n%'",
        )
        _run(
            conn,
            f"INSERT INTO claim_transactions SELECT transaction_id || '-n{k}', claim_id || '-n{k}', transaction_date, "
            "recorded_at, paid_amount, case_reserve_change, status FROM claim_transactions WHERE claim_id IN "
            f"(SELECT claim_id FROM claims WHERE {new_claims} AND claim_id NOT LIKE '%-n%')",
        )


def line_missing_from_the_extract(conn, month):
    property_claims = "SELECT claim_id FROM claims WHERE line_of_business = 'Property'"
    _run(conn, f"DELETE FROM claim_transactions WHERE claim_id IN ({property_claims})")
    _run(conn, "DELETE FROM claims WHERE line_of_business = 'Property'")


def line_missing_from_the_month(conn, month):
    _run(
        conn,
        f"DELETE FROM claim_transactions WHERE {_month_rows(month)} AND claim_id IN "
        "(SELECT claim_id FROM claims WHERE line_of_business = 'Property')",
    )


def stalled_extract(conn, month):
    _run(conn, f"DELETE FROM claim_transactions WHERE {_month_rows(month)}")
    _run(conn, f"DELETE FROM claims WHERE report_date >= '{month.start}'")


def premium_negated(conn, month):
    _run(conn, f"UPDATE earned_exposure SET earned_premium = -earned_premium WHERE month = '{month.start}'")


def premium_zero(conn, month):
    _run(
        conn,
        f"UPDATE earned_exposure SET earned_premium = 0 WHERE month = '{month.start}' AND line_of_business = 'Motor'",
    )


def exposure_nan(conn, month):
    _run(conn, f"UPDATE earned_exposure SET exposure_units = 'NaN' WHERE month = '{month.start}'")


def exposure_infinite(conn, month):
    value = "'Infinity'" if conn.dialect.name == "postgresql" else "9e999"
    _run(conn, f"UPDATE earned_exposure SET exposure_units = {value} WHERE month = '{month.start}'")


def exposure_thousandfold(conn, month):
    _run(
        conn,
        f"UPDATE earned_exposure SET exposure_units = exposure_units * 1000 WHERE month = '{month.start}' "
        "AND line_of_business = 'Liability'",
    )


def premium_missing_for_the_month(conn, month):
    _run(conn, f"DELETE FROM earned_exposure WHERE month = '{month.start}'")


def every_line_renamed(conn, month):
    for table in ("claims", "earned_exposure"):
        _run(conn, f"UPDATE {table} SET line_of_business = UPPER(line_of_business)")


def new_line_appears(conn, month):
    _run(
        conn,
        f"UPDATE claims SET line_of_business = 'Marine' WHERE report_date >= '{month.start}' "
        f"AND report_date <= '{month.end}' AND line_of_business = 'Property'",
    )


def recorded_before_transaction(conn, month):
    _run(
        conn,
        f"UPDATE claim_transactions SET recorded_at = '{month.start - dt.timedelta(days=40)}' "
        f"WHERE {_month_rows(month)}",
    )


def status_in_another_case(conn, month):
    _run(conn, f"UPDATE claim_transactions SET status = UPPER(status) WHERE {_month_rows(month)}")


def case_reserves_inflated(conn, month):
    """One line's case-reserve increases of the month (new reserves and raises) three times what the claims system
    holds: x3, so the check meant for it is shown to catch a material factor, not only a gross one."""
    _run(
        conn,
        "UPDATE claim_transactions SET case_reserve_change = case_reserve_change * 3 "
        f"WHERE {_month_rows(month)} AND case_reserve_change > 0 AND claim_id IN "
        "(SELECT claim_id FROM claims WHERE line_of_business = 'Liability')",
    )


def control_totals_disagree(conn, month):
    """The general ledger says Motor paid 10% more in the month than the extract holds."""
    _run(
        conn,
        "INSERT INTO finance_control_totals (line_of_business, month, paid_amount, case_reserve_movement) "
        "SELECT c.line_of_business, :start, ROUND(SUM(t.paid_amount) * "
        "CASE WHEN c.line_of_business = 'Motor' THEN 1.1 ELSE 1 END, 2), ROUND(SUM(t.case_reserve_change), 2) "
        "FROM claim_transactions t JOIN claims c ON c.claim_id = t.claim_id "
        "WHERE t.transaction_date >= :start AND t.transaction_date <= :end AND t.recorded_at < :after "
        "GROUP BY c.line_of_business".replace(":start", f"'{month.start}'")
        .replace(":end", f"'{month.end}'")
        .replace(":after", f"'{month.after}'"),
    )


CATALOGUE = [
    Defect("renamed column", renamed_column, ("claim_transactions", "paid_amount")),
    Defect("missing column", missing_column, ("claims", "report_date")),
    Defect("missing table", missing_table, ("earned_exposure",)),
    Defect("amounts as text", amounts_as_text, ("claim_transactions", "paid_amount")),
    Defect("dates as text", dates_as_text, ("claims", "accident_date")),
    Defect("claim with two accident dates", claim_with_two_accident_dates, ("accident_date",)),
    Defect("claim in two lines", claim_in_two_lines, ("line_of_business",)),
    Defect("null line of business", null_line_of_business, ("line_of_business",)),
    Defect("null claim id in claims", null_claim_id_in_claims, ("claim_id",)),
    Defect("null recorded_at", null_recorded_at, ("recorded_at",)),
    Defect("null transaction claim id", null_transaction_claim_id, ("claim_id",)),
    Defect("future-dated rows", future_dated_rows, ("transaction_date",)),
    Defect("duplicate transaction ids", duplicate_transaction_ids, ("transaction_id",)),
    Defect("amount out of bounds", amount_out_of_bounds, ("paid_amount",)),
    Defect("unknown claim type", unknown_claim_type, ("claim_type",)),
    Defect("orphan transactions", orphan_transactions, ("claim",)),
    Defect("report before accident", report_before_accident, ("accident",)),
    Defect("claimant age out of range", claimant_age_out_of_range, ("claimant_age",)),
    Defect("double postings", double_postings, ()),
    Defect("empty extract", empty_extract, ()),
    Defect("injection string", injection_string, ("claim",)),
    Defect("one line in cents", one_line_in_cents, ("Motor",)),
    Defect("ten times the transactions", ten_times_the_transactions, ()),
    Defect("ten times the new claims", ten_times_the_new_claims, ()),
    Defect("line missing from the extract", line_missing_from_the_extract, ("Property",)),
    Defect("line missing from the month", line_missing_from_the_month, ("Property",)),
    Defect("stalled extract", stalled_extract, ()),
    Defect("premium negated", premium_negated, ("premium",)),
    Defect("premium zero", premium_zero, ("Motor", "premium")),
    Defect("premium missing for the month", premium_missing_for_the_month, ()),
    Defect("exposure NaN", exposure_nan, ("exposure",), dialects=("postgresql",)),  # SQLite stores NaN as NULL
    Defect("exposure infinite", exposure_infinite, ("exposure",)),
    Defect("exposure thousandfold", exposure_thousandfold, ("Liability", "exposure")),
    Defect("every line renamed", every_line_renamed, ()),
    Defect("new line appears", new_line_appears, ("Marine",)),
    Defect("recorded before transaction", recorded_before_transaction, ("recorded_at",)),
    Defect("status in another case", status_in_another_case, ("status",)),
    Defect("case reserves inflated", case_reserves_inflated, ("Liability", "case_reserve_raise")),
    Defect("control totals disagree", control_totals_disagree, ("Motor",)),
]
