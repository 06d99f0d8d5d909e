"""The clean synthetic book over 24 month ends: every check passes and nothing is held.

The book has the generator's legitimate drift (younger claimants and more bodily injury from 2024-03, faster and
dearer settlement from 2024-07) and is as small as a hostile new user tried (3,000 claims): monthly volumes per line
are a few dozen claims, the noisiest a real book gets. The first model is approved at 2023-01-31; every later month
runs its checks and publishes the champion's refit, as the DAG does in a month without promotion.
"""

from __future__ import annotations

import pytest

from devtools.synth import BookSpec, CovariateDrift, DevelopmentDrift, write_book
from include.reserving import schema
from include.reserving.dates import month_end
from include.reserving.domain import PublicationStatus
from include.reserving.stages import RunFacts
from include.reserving.warehouse.core import make_engine
from include.reserving.warehouse.reserves import versions
from tests.integration.conftest import CHEAP_SEARCH
from tests.integration.monthly import publish_first_month, run_month

pytestmark = pytest.mark.slow

MONTHS = [month_end(2023 * 12 + i) for i in range(24)]  # 2023-01-31 .. 2024-12-31
BOOK = BookSpec(
    claims=3_000,
    start="2018-01",
    end="2024-12",
    seed=31,
    covariate_drift=CovariateDrift(start="2024-03", younger_by=8.0, bi_shift=0.15),
    development_drift=DevelopmentDrift(start="2024-07", payment_speedup=1.2, severity_factor=1.1),
)


def test_twenty_four_clean_month_ends_pass_every_check_and_none_is_held(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    monkeypatch.setenv("AIRFLOW_CONN_RESERVING_DB", url)
    monkeypatch.setenv("RESERVING_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    for name, value in CHEAP_SEARCH.items():
        monkeypatch.setenv(name, value)
    engine = make_engine(url)
    schema.create_all(engine)
    write_book(url, BOOK, progress=False)

    publish_first_month(RunFacts.create(MONTHS[0], f"clean__{MONTHS[0]}"))
    held = {}
    for valuation_date in MONTHS[1:]:
        published = run_month(RunFacts.create(valuation_date, f"clean__{valuation_date}"))
        if published["hold_reasons"]:
            held[valuation_date] = published["hold_reasons"]
    assert not held, f"clean months were held: {held}"
    for valuation_date in MONTHS:
        table = versions(engine, valuation_date)
        assert table["is_current"].tolist() == [True]
        assert table["status"].iloc[0] == PublicationStatus.APPROVED
