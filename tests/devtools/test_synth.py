"""The synthetic claims book: determinism, database round trip, actuarial sanity, scenario knobs, exact defects."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, text

from devtools.book import load_book
from devtools.synth import (
    CLAIM_TYPES,
    BookSpec,
    CovariateDrift,
    Defects,
    DevelopmentDrift,
    generate_book,
    main,
    write_book,
)
from include.reserving import schema

DRIFT_MONTH = "2020-01"


@pytest.fixture(scope="module")
def base_book():
    return generate_book(BookSpec(claims=5_000, seed=11))


def _url(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _read(engine, table, order_by) -> pd.DataFrame:
    with engine.connect() as conn:
        frame = pd.read_sql(select(table).order_by(*order_by), conn)
    for name in table.c.keys():
        if name in ("accident_date", "report_date", "transaction_date", "recorded_at", "month"):
            frame[name] = pd.to_datetime(frame[name]).astype("datetime64[s]")
    return frame


def _same_rows(loaded: pd.DataFrame, generated: pd.DataFrame, keys: list[str]) -> None:
    generated = generated.sort_values(keys, kind="stable").reset_index(drop=True)
    for name in generated.columns:
        left, right = loaded[name], generated[name]
        if right.dtype.kind == "f":
            np.testing.assert_allclose(left.astype(float), right, rtol=0, atol=1e-9, err_msg=name)
        elif right.dtype.kind == "M":
            assert (left.to_numpy() == right.to_numpy()).all(), name
        else:
            assert left.astype(object).tolist() == right.astype(object).tolist(), name


def test_same_seed_identical_rows_different_seed_different(base_book):
    again = generate_book(BookSpec(claims=5_000, seed=11))
    other = generate_book(BookSpec(claims=5_000, seed=12))
    pd.testing.assert_frame_equal(base_book.claims, again.claims)
    pd.testing.assert_frame_equal(base_book.transactions, again.transactions)
    pd.testing.assert_frame_equal(base_book.exposure, again.exposure)
    assert not base_book.claims["claimant_age"].equals(other.claims["claimant_age"])
    assert base_book.transactions["paid_amount"].sum() != pytest.approx(other.transactions["paid_amount"].sum())


def test_write_book_loads_exactly_the_generated_rows(warehouse):
    spec = BookSpec(claims=2_000, seed=5, chunk_claims=700)  # three chunks
    summary = write_book(_url(warehouse), spec, progress=False)
    book = generate_book(spec)
    assert (summary.claims, summary.transactions) == (2_000, len(book.transactions))
    _same_rows(_read(warehouse, schema.claims, ["claim_id"]), book.claims, ["claim_id"])
    _same_rows(_read(warehouse, schema.claim_transactions, ["transaction_id"]), book.transactions, ["transaction_id"])
    _same_rows(
        _read(warehouse, schema.earned_exposure, ["line_of_business", "month"]),
        book.exposure,
        ["line_of_business", "month"],
    )
    # reset replaces, never appends
    write_book(_url(warehouse), spec, reset=True, progress=False)
    with warehouse.connect() as conn:
        assert conn.execute(text("select count(*) from claims")).scalar() == 2_000


def test_book_shape_and_invariants(base_book):
    claims, tx = base_book.claims, base_book.transactions
    assert set(claims["line_of_business"]) == {"Motor", "Property", "Liability"}
    assert set(claims["claim_type"]) == set(CLAIM_TYPES)
    assert claims["claimant_age"].between(18, 95).all()
    assert claims["claim_id"].is_unique and tx["transaction_id"].is_unique
    assert 8 <= len(tx) / len(claims) <= 12  # about 10 transactions per claim
    joined = tx.merge(claims, on="claim_id")
    assert (claims["report_date"] >= claims["accident_date"]).all()
    assert (joined["transaction_date"] >= joined["report_date"]).all()
    assert (tx["recorded_at"] >= tx["transaction_date"]).all()
    late = (tx["recorded_at"] - tx["transaction_date"]).dt.days >= 30
    assert 0.001 < late.mean() < 0.02  # a few late recordings for point-in-time tests
    assert not tx.duplicated(["claim_id", "transaction_date", "paid_amount"]).any()
    # case reserves move, never go negative, and every claim ends closed with no reserve
    reserve = tx.groupby("claim_id")["case_reserve_change"].cumsum().round(2)
    assert reserve.min() >= 0
    last = tx.groupby("claim_id").tail(1)
    assert (last["status"] == "closed").all() and (reserve[last.index] == 0).all()
    status_share = tx.drop_duplicates(["claim_id", "status"])["status"].value_counts() / len(claims)
    assert status_share["closed"] == 1.0 and 0.02 < status_share["reopened"] < 0.08
    nil_share = (tx.groupby("claim_id")["paid_amount"].sum() == 0).mean()
    assert 0.1 < nil_share < 0.25
    assert (tx.groupby("claim_id")["paid_amount"].apply(lambda p: (p > 0).sum()).mean()) > 3  # partial payments


def _paid_factors(book, max_age: int = 6, first_ay: int = 2015) -> pd.DataFrame:
    """Volume-weighted paid age-to-age factors by line over accident years and development years (to 2024)."""
    tx = book.transactions.merge(book.claims[["claim_id", "line_of_business", "accident_date"]], on="claim_id")
    tx["ay"] = tx["accident_date"].dt.year
    tx = tx[tx["ay"] >= first_ay]
    tx["dev"] = tx["transaction_date"].dt.year - tx["ay"] + 1
    paid = tx.groupby(["line_of_business", "ay", "dev"])["paid_amount"].sum().unstack("dev", fill_value=0)
    cumulative = paid.cumsum(axis=1)
    last_ay = 2024
    factors = {}
    for line, tri in cumulative.groupby(level=0):
        tri = tri.droplevel(0)
        factors[line] = [
            tri.loc[tri.index <= last_ay - age, age + 1].sum() / tri.loc[tri.index <= last_ay - age, age].sum()
            for age in range(1, max_age + 1)
        ]
    return pd.DataFrame(factors, index=range(1, max_age + 1))


def test_paid_development_short_tail_vs_long_tail(base_book):
    f = _paid_factors(base_book)
    assert (f >= 1).all().all() and (f.loc[1] > 1).all()
    for line in f.columns:  # broadly decreasing: tail factors of ~1.0000x may wobble by reopenings
        assert (f[line].diff().dropna() < 0.005).all(), (line, f[line].tolist())
    assert f["Liability"].is_monotonic_decreasing
    assert f.loc[1, "Motor"] < 1.6
    assert 1.3 < f.loc[1, "Property"] < 2.2
    assert f.loc[1, "Liability"] > 3.0
    assert f.loc[1, "Liability"] > 2 * f.loc[1, "Motor"]
    assert f.loc[3, "Motor"] < 1.01 and f.loc[3, "Liability"] > 1.1  # Motor is run off by age 3, Liability is not


def test_claims_inflation_and_earned_premium(base_book):
    claims, tx, exposure = base_book.claims, base_book.transactions, base_book.exposure
    assert (
        len(exposure) == 3 * 120 and (exposure["earned_premium"] > 0).all() and (exposure["exposure_units"] > 0).all()
    )
    paid = tx.merge(claims[["claim_id", "accident_date", "line_of_business"]], on="claim_id")
    by_year = paid.groupby(paid["accident_date"].dt.year)["paid_amount"].sum()
    premium = exposure.groupby(exposure["month"].dt.year)["earned_premium"].sum()
    loss_ratio = (by_year / premium).loc[2015:2021]  # mature years
    assert 0.5 < loss_ratio.mean() < 0.8
    # severity per paid claim grows with inflation (4% a year): 2021 vs 2015 about 1.04**6 = 1.27, noisy
    per_claim = (
        paid[paid["line_of_business"] == "Motor"]
        .groupby("claim_id")
        .agg(paid=("paid_amount", "sum"), year=("accident_date", lambda d: d.iloc[0].year))
    )
    per_claim = per_claim[per_claim["paid"] > 0]
    ratio = (
        per_claim[per_claim["year"] >= 2021]["paid"].median() / per_claim[per_claim["year"] <= 2016]["paid"].median()
    )
    assert 1.1 < ratio < 1.6


def _split_at(book, month: str):
    after = book.claims["accident_date"] >= pd.Timestamp(month)
    return book.claims[~after], book.claims[after]


def test_covariate_drift_makes_claimants_younger_and_more_bodily_injury(base_book):
    drifted = generate_book(
        BookSpec(claims=5_000, seed=11, covariate_drift=CovariateDrift(DRIFT_MONTH, younger_by=5, bi_shift=0.15))
    )
    before_base, after_base = _split_at(base_book, DRIFT_MONTH)
    before, after = _split_at(drifted, DRIFT_MONTH)
    pd.testing.assert_frame_equal(before, before_base)  # untouched before the drift month
    same_type = after["claim_type"] == after_base["claim_type"]  # BI claimants are younger: compare like with like
    age_shift = after.loc[same_type, "claimant_age"].mean() - after_base.loc[same_type, "claimant_age"].mean()
    assert -5.0 <= age_shift <= -4.6  # 5 years younger, a little less where ages hit the floor of 18
    bi_shift = (after["claim_type"] == "BodilyInjury").mean() - (after_base["claim_type"] == "BodilyInjury").mean()
    assert bi_shift == pytest.approx(0.15, abs=0.03)
    # what a drift monitor sees inside the drifted book: the post-drift mean age falls by 5 years plus the effect of
    # the BI mix (BI claimants average 5 years younger, so 0.15 more BI is another 0.75)
    within = after["claimant_age"].mean() - before["claimant_age"].mean()
    within_base = after_base["claimant_age"].mean() - before_base["claimant_age"].mean()
    assert within - within_base == pytest.approx(-5.75, abs=0.5)


def _per_claim(book, claims):
    tx = book.transactions[book.transactions["claim_id"].isin(claims["claim_id"])]
    first_close = tx[tx["status"] == "closed"].groupby("claim_id")["transaction_date"].min()
    report = claims.set_index("claim_id")["report_date"]
    return pd.DataFrame(
        {"paid": tx.groupby("claim_id")["paid_amount"].sum(), "settle_days": (first_close - report).dt.days}
    )


def test_development_drift_speeds_payments_and_raises_severity(base_book):
    faster = generate_book(
        BookSpec(claims=5_000, seed=11, development_drift=DevelopmentDrift(DRIFT_MONTH, payment_speedup=2.0))
    )
    dearer = generate_book(
        BookSpec(claims=5_000, seed=11, development_drift=DevelopmentDrift(DRIFT_MONTH, severity_factor=1.5))
    )
    before_base, after_base = _split_at(base_book, DRIFT_MONTH)
    base_tx = base_book.transactions
    for book in (faster, dearer):
        unchanged = book.transactions[book.transactions["claim_id"].isin(before_base["claim_id"])]
        pd.testing.assert_frame_equal(unchanged, base_tx[base_tx["claim_id"].isin(before_base["claim_id"])])

    base, fast = _per_claim(base_book, after_base), _per_claim(faster, after_base)
    assert fast["settle_days"].median() / base["settle_days"].median() == pytest.approx(0.5, abs=0.05)
    # visible in development: Liability's first paid age-to-age factor falls for the drifted accident years
    base_factor = _paid_factors(base_book, max_age=3, first_ay=2020).loc[1, "Liability"]
    assert _paid_factors(faster, max_age=3, first_ay=2020).loc[1, "Liability"] < 0.7 * base_factor

    dear = _per_claim(dearer, after_base)
    assert dear["paid"].sum() / base["paid"].sum() == pytest.approx(1.5, rel=1e-4)  # exact up to cent rounding
    assert (dear["settle_days"] == base["settle_days"]).all()


DEFECTS = Defects(
    bad_ages=3,
    null_paid=4,
    unknown_types=5,
    duplicate_ids=6,
    future_dated=7,
    accident_after_report=8,
    duplicate_rows=9,
    valuation_date=dt.date(2022, 6, 30),
)

DEFECT_QUERIES = {
    "bad_ages": "select count(*) from claims where claimant_age < 0 or claimant_age > 120",
    "null_paid": "select count(*) from claim_transactions where paid_amount is null",
    "unknown_types": "select count(*) from claims where claim_type not in ('BodilyInjury', 'PropertyDamage')",
    "duplicate_ids": "select count(*) - count(distinct transaction_id) from claim_transactions",
    "future_dated": "select count(*) from claim_transactions where transaction_date > :v and recorded_at < :next_day",
    "accident_after_report": "select count(*) from claims where accident_date > report_date",
    "duplicate_rows": "select (select count(*) from claim_transactions) - count(*) from"
    " (select distinct claim_id, transaction_date, paid_amount from claim_transactions) d",
}


def _defect_counts(engine) -> dict[str, int]:
    params = {"v": DEFECTS.valuation_date, "next_day": dt.datetime(2022, 7, 1)}
    with engine.connect() as conn:
        return {name: conn.execute(text(sql), params).scalar() for name, sql in DEFECT_QUERIES.items()}


def test_injected_defect_counts_are_exact_in_the_database(warehouse):
    spec = BookSpec(claims=3_000, seed=3, defects=DEFECTS, chunk_claims=1_000)  # counts spread over 3 chunks
    load_book(warehouse, generate_book(spec))
    expected = {name: getattr(DEFECTS, name) for name in DEFECT_QUERIES}
    assert _defect_counts(warehouse) == expected


def test_a_clean_book_has_no_defects(warehouse):
    load_book(warehouse, generate_book(BookSpec(claims=2_000, seed=3)))
    assert _defect_counts(warehouse) == dict.fromkeys(DEFECT_QUERIES, 0)


def test_cli_writes_the_book_and_prints_a_summary(sqlite_url, capsys):
    summary = main(
        ["--claims", "1500", "--seed", "4", "--db", sqlite_url, "--quiet", "--drift-month", "2021-01"]
        + ["--younger-by", "3", "--future-dated", "2", "--defect-valuation-date", "2023-12-31"]
    )
    out = capsys.readouterr().out
    assert "1,500 claims" in out and f"{summary.transactions:,} transactions" in out
    spec = BookSpec(
        claims=1500,
        seed=4,
        covariate_drift=CovariateDrift("2021-01", younger_by=3),
        defects=Defects(future_dated=2, valuation_date=dt.date(2023, 12, 31)),
    )
    assert summary.transactions == len(generate_book(spec).transactions)


def test_future_dated_defects_need_a_valuation_date():
    with pytest.raises(ValueError, match="valuation_date"):
        Defects(future_dated=1)


def test_control_totals_are_the_ledger_of_the_generated_rows(base_book):
    """Per line and month: rows dated in the month and recorded by its end; switching them off changes no row."""
    totals = base_book.control_totals
    assert len(totals) == 3 * 120  # three lines, accident months 2015-01 .. 2024-12
    txns = base_book.transactions.merge(base_book.claims[["claim_id", "line_of_business"]], on="claim_id")
    dated = txns[
        (txns["line_of_business"] == "Property")
        & (txns["transaction_date"] >= "2019-03-01")
        & (txns["transaction_date"] < "2019-04-01")
    ]
    march = dated[dated["recorded_at"] < "2019-04-01"]
    assert 0 < len(dated) - len(march)  # recorded after March closed: not in March's totals
    row = totals[(totals["line_of_business"] == "Property") & (totals["month"] == pd.Timestamp("2019-03-01"))]
    assert row["paid_amount"].item() == round(march["paid_amount"].sum(), 2)
    assert row["case_reserve_movement"].item() == round(march["case_reserve_change"].sum(), 2)
    without = generate_book(BookSpec(claims=5_000, seed=11, control_totals=False))
    assert without.control_totals is None
    pd.testing.assert_frame_equal(without.transactions, base_book.transactions)
