"""Fixtures for the model tests: chainladder's published samples and a small synthetic portfolio as cells."""

from __future__ import annotations

import datetime as dt

import chainladder as cl
import numpy as np
import pandas as pd
import pytest

from include.reserving import cells as cellsmod


def sample_cells(name: str) -> pd.DataFrame:
    """A chainladder sample triangle as a one-segment cells frame of paid amounts."""
    return cellsmod.from_triangle(cl.load_sample(name), columns={"values": "paid"}, segment=name)


def synthetic_cells(valuation: dt.date = dt.date(2024, 5, 31), n_origins: int = 16, seed: int = 7) -> pd.DataFrame:
    """Quarterly origins of three segments valued at ``valuation``, with noisy multiplicative development.

    Evaluation dates step back from the valuation date by three months, as the ingest stage produces them.
    """
    rng = np.random.default_rng(seed)
    patterns = {"motor": 0.55, "property": 0.75, "liability": 0.3}  # share paid in the first quarter of development
    last_origin = dt.date(valuation.year, (valuation.month - 1) // 3 * 3 + 1, 1)
    rows = []
    for segment, speed in patterns.items():
        for i in range(n_origins):
            origin = (pd.Timestamp(last_origin) - pd.DateOffset(months=3 * i)).date()
            premium = 1000.0 * (1 + 0.02 * (n_origins - i)) * (2.0 if segment == "motor" else 1.0)
            ultimate = premium * 0.7 * rng.lognormal(0.0, 0.1)
            age = (valuation.year - origin.year) * 12 + valuation.month - origin.month + 1
            ages = list(range(age, 0, -3))[::-1]
            for development in ages:
                share = 1 - (1 - speed) ** (development / 3)
                paid = round(ultimate * share * rng.lognormal(0.0, 0.03), 2)
                rows.append(
                    {
                        "segment": segment,
                        "origin": origin,
                        "development": development,
                        "paid": paid,
                        "incurred": round(paid * (1 + 0.5 * (1 - share)), 2),
                        "reported_count": int(10 + development),
                        "closed_count": int(5 + development // 2),
                        "earned_premium": premium,
                        "exposure": premium / 10,
                    }
                )
    frame = cellsmod.normalise(pd.DataFrame(rows))
    # the cumulative paid must never decrease within an origin
    frame["paid"] = frame.groupby(["segment", "origin"])["paid"].cummax()
    return frame


@pytest.fixture(scope="session")
def raa_cells() -> pd.DataFrame:
    return sample_cells("raa")


@pytest.fixture(scope="session")
def genins_cells() -> pd.DataFrame:
    return sample_cells("genins")


@pytest.fixture(scope="session")
def portfolio_cells() -> pd.DataFrame:
    return synthetic_cells()
