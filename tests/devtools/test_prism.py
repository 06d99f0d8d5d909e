"""The prism loader maps every row of chainladder's claim-level sample into the source schema."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from devtools.prism import cents_by_largest_remainder, load_prism, main, prism_book, read_prism


@pytest.fixture(scope="module")
def raw():
    return read_prism()


def test_prism_loads_every_claim_and_every_cent(warehouse, raw):
    load_prism(warehouse)
    csv_cents = round(raw["Paid"].sum() * 100)
    with warehouse.connect() as conn:
        claims = conn.execute(text("select count(*), count(distinct claim_id) from claims")).one()
        by_line = dict(conn.execute(text("select line_of_business, count(*) from claims group by 1")).all())
        types = {r[0] for r in conn.execute(text("select distinct claim_type from claims"))}
        # sum in cents as integers, so no float rounding sits between the database and the CSV
        paid_cents = conn.execute(text("select sum(round(paid_amount * 100)) from claim_transactions")).scalar()
        per_claim = pd.read_sql(
            text("select claim_id, sum(paid_amount) as paid from claim_transactions group by claim_id"), conn
        )
        unclosed = conn.execute(
            text(
                "select count(*) from claims c where not exists (select 1 from claim_transactions t"
                " where t.claim_id = c.claim_id and t.status = 'closed')"
            )
        ).scalar()
        bad_dates = conn.execute(
            text(
                "select count(*) from claim_transactions t join claims c on c.claim_id = t.claim_id"
                " where t.transaction_date < c.report_date or c.report_date < c.accident_date"
            )
        ).scalar()
        exposure = conn.execute(text("select count(*), min(earned_premium) from earned_exposure")).one()
    assert tuple(claims) == (34_244, 34_244) == (len(raw), raw["ClaimNo"].nunique())
    assert by_line == raw["Line"].value_counts().to_dict() == {"Auto": 25_302, "Home": 8_942}
    assert types == {"PropertyDamage"}
    assert int(paid_cents) == csv_cents == 120_875_540_197
    per_claim["claim_no"] = per_claim["claim_id"].str.removeprefix("PRISM-").astype(int)
    merged = per_claim.merge(raw[["ClaimNo", "Paid"]], left_on="claim_no", right_on="ClaimNo")
    assert len(merged) == len(raw) and np.abs(merged["paid"] - merged["Paid"]).max() <= 0.01
    assert unclosed == 0 and bad_dates == 0
    assert exposure[0] == 120 + 99 and exposure[1] > 0  # accident months: Auto 2008-01..2017-12, Home ..2016-03


def test_case_reserves_open_at_report_and_release_at_payment(raw):
    tx = prism_book(raw).transactions
    assert len(tx) == 2 * len(raw)  # open + payment/closure: CloseDate equals PaymentDate in the shipped file
    assert tx.groupby("claim_id")["case_reserve_change"].sum().abs().max() < 1e-6
    assert (tx.loc[tx["status"] == "open", "case_reserve_change"] > 0).all()
    assert tx["transaction_id"].is_unique


def test_largest_remainder_cents_keep_the_total():
    amounts = np.array([0.004, 0.004, 0.004, 1.333333, 2.666667])
    cents = cents_by_largest_remainder(amounts)
    assert cents.sum() == round(amounts.sum() * 100) and np.abs(cents - amounts * 100).max() < 1


def test_cli(sqlite_url, capsys):
    main(["--db", sqlite_url])
    assert "prism: 34,244 claims, 68,488 transactions" in capsys.readouterr().out
