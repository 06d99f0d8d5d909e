"""Cape Cod (Stanard-Bühlmann) on earned premium, as a search candidate beside chain ladder and XGBoost.

The development pattern is the paid chain ladder's (:class:`ChainLadder`, the same averages); the expected loss ratio
(ELR) comes from the data being reserved: for origin ``i``, ``sum_j d^|i-j| paid_j / sum_j d^|i-j| premium_j * p_j``
over the segment's origins, where ``p_j`` is the share of the ultimate the pattern expects paid at origin ``j``'s latest
age and ``d`` the ``decay`` (1: one ELR for the segment). Each origin's future paid then emerges as the pattern
expects of its ELR times its premium, whatever its own paid to date (the Bornhuetter-Ferguson projection with that
ELR): the leverage a young origin's chain ladder puts on a few payments is gone, at the price of trusting premium.

A part-elapsed origin's premium is earned to date while its paid is projected on complete periods' development
(:func:`cells.period_elapsed`): the projection uses the whole period's premium (earned to date over the elapsed share).
Origins without premium, and segments without any, keep the chain ladder's projection. The standard error is the
chain ladder's (Mack) scaled to the Cape Cod reserve: the same coefficient of variation, an approximation.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from include.reserving import cells as cellsmod
from include.reserving.models.base import PREDICTION_COLUMNS, ReservingModel
from include.reserving.models.chain_ladder import ChainLadder

log = logging.getLogger(__name__)


class CapeCod(ReservingModel):
    """Paid Cape Cod per segment: chain-ladder pattern, expected loss ratio from the data.

    Parameters
    ----------
    decay : float
        Weight ``decay ** |i - j|`` of origin ``j`` in origin ``i``'s expected loss ratio (chainladder's
        ``CapeCod(decay=...)``); 1 gives every origin of the segment one ELR.
    average, n_periods : see :class:`ChainLadder`
        The chain ladder behind the pattern.

    Attributes
    ----------
    chain_ladder_ : ChainLadder
        The fitted chain ladder (pattern and standard errors).
    cdf_ : pandas.DataFrame
        ``segment, development, cdf``: factor from each age to the oldest age of the data.
    period_months_ : int
        Origin period of the training cells.
    training_cells_ : pandas.DataFrame
        The cells the model was fitted on.

    Examples
    --------
    >>> import chainladder as cl
    >>> raa = cellsmod.from_triangle(cl.load_sample("raa"), columns={"values": "paid"}, segment="raa")
    >>> raa["earned_premium"] = 40000.0
    >>> round(CapeCod().fit(raa).ultimates(raa)["unpaid"].sum())
    59116
    """

    method = "cape_cod"

    def __init__(self, *, decay: float = 1.0, average: str = "volume", n_periods: int = -1):
        self.decay = decay
        self.average = average
        self.n_periods = n_periods

    @classmethod
    def search_grid(cls) -> list[dict[str, Any]]:
        """One ELR per segment, and ELRs weighted toward the neighbouring origins (decay 0.75 and 0.5)."""
        return [{"method": cls.method, "params": params} for params in ({}, {"decay": 0.75}, {"decay": 0.5})]

    def complexity(self) -> float:
        """1, as a chain-ladder variant: the chain ladder's pattern and one estimated loss ratio per segment."""
        return 1.0

    def fit(self, cells: pd.DataFrame) -> CapeCod:
        """Fit the chain-ladder pattern on ``cells``; returns ``self``."""
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"decay={self.decay!r} must lie in (0, 1]")
        cells = cellsmod.normalise(cells)
        self.chain_ladder_ = ChainLadder(average=self.average, n_periods=self.n_periods).fit(cells)
        ldf = self.chain_ladder_.ldf_.sort_values(["segment", "development"], ascending=[True, False])
        # the factor from an age to the oldest one is the product of the age-to-age factors from it on
        cdf = ldf.assign(cdf=ldf.groupby("segment")["ldf"].cumprod())[["segment", "development", "cdf"]]
        # nothing develops beyond the oldest age: a segment's own (its triangle's) and the book's (a young segment's
        # borrowed square reaches it)
        own = cells.groupby("segment")["development"].max().astype(int)
        oldest = pd.DataFrame({"segment": own.index, "development": own.to_numpy()})
        for age in (int(own.max()), cellsmod.ULTIMATE_DEVELOPMENT):
            oldest = pd.concat([oldest, pd.DataFrame({"segment": own.index, "development": age})])
        self.cdf_ = pd.concat([cdf, oldest.assign(cdf=1.0)], ignore_index=True).drop_duplicates(
            ["segment", "development"]
        )
        unpriced = sorted(set(cells["segment"]) - set(cells.loc[cells["earned_premium"] > 0, "segment"]))
        if unpriced:
            log.warning("segments %s have no earned premium: Cape Cod keeps their chain ladder", unpriced)
        self.period_months_ = cellsmod.origin_months(cells)
        self.training_cells_ = cells
        return self

    def _share_paid(self, frame: pd.DataFrame) -> np.ndarray:
        """The share of the ultimate the pattern expects paid at each row's ``segment, development``."""
        cdf = frame[["segment", "development"]].merge(self.cdf_, how="left", on=["segment", "development"])["cdf"]
        return 1.0 / cdf.to_numpy(dtype=float)

    def _origins(self, cells: pd.DataFrame) -> pd.DataFrame:
        """Per (segment, origin) of normalised ``cells``, sorted: ``latest_age``, ``latest_paid``, ``premium`` (the
        whole period's: earned to date over the elapsed share; NaN without premium), ``latest_share`` (of the ultimate
        the pattern expects paid at the latest age) and ``elr``."""
        latest = cells.groupby(["segment", "origin"], sort=True).last()
        elapsed = cellsmod.period_elapsed(cells, self.period_months_).to_numpy()
        origins = pd.DataFrame(
            {
                "latest_age": latest["development"].astype(int),
                "latest_paid": latest["paid"].astype(float),
                "premium": (latest["earned_premium"].astype(float) / elapsed).where(latest["earned_premium"] > 0),
            }
        )
        keys = origins.index.to_frame(index=False)
        origins["latest_share"] = self._share_paid(keys.assign(development=origins["latest_age"].to_numpy()))
        used = origins["premium"] * origins["latest_share"]
        paid = origins["latest_paid"].where(used.notna())
        elr = np.full(len(origins), np.nan)
        for rows in keys.groupby("segment", sort=True).indices.values():
            weights = self.decay ** np.abs(rows[:, None] - rows[None, :])
            numerator = weights @ paid.iloc[rows].fillna(0.0).to_numpy()
            denominator = weights @ used.iloc[rows].fillna(0.0).to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                elr[rows] = np.where(denominator > 0, numerator / denominator, np.nan)
        # an origin without premium has no expected loss ratio of its own (its chain ladder stands)
        origins["elr"] = np.where(origins["premium"].notna(), elr, np.nan)
        return origins

    def expected_loss_ratios(self, cells: pd.DataFrame) -> pd.Series:
        """Each (segment, origin)'s expected loss ratio (NaN without premium), on the whole period's premium."""
        self._check_fitted()
        return self._origins(cellsmod.normalise(cells))["elr"]

    def predict(self, cells: pd.DataFrame) -> pd.DataFrame:
        """Completed square of cumulative paid (see :meth:`ChainLadder.predict` for the layout): each future cell is
        the latest paid plus the ELR times premium times the share of the ultimate the pattern expects to emerge."""
        self._check_fitted()
        cells = cellsmod.normalise(cells)
        square = self.chain_ladder_.predict(cells).join(self._origins(cells), on=["segment", "origin"])
        expected = square["elr"] * square["premium"] * (self._share_paid(square) - square["latest_share"])
        projected = square["latest_paid"] + expected
        # observed cells stay as paid; an origin without an ELR keeps the chain ladder's projection
        square["paid"] = square["paid"].where(square["observed"] | projected.isna(), projected)
        return square[PREDICTION_COLUMNS]

    def _std_err(self, cells: pd.DataFrame, prediction: pd.DataFrame) -> pd.Series:
        chain_ladder = self.chain_ladder_
        cl_prediction = chain_ladder.predict(cells)
        mack = chain_ladder._std_err(cells, cl_prediction)
        latest = cells.groupby(["segment", "origin"])["paid"].last()

        def unpaid(square: pd.DataFrame) -> pd.Series:
            ultimate = square[square["development"] == cellsmod.ULTIMATE_DEVELOPMENT]
            return ultimate.set_index(["segment", "origin"])["paid"] - latest

        ratio = (unpaid(prediction) / unpaid(cl_prediction).where(lambda u: u > 0)).reindex(mack.index)
        return (mack * ratio.fillna(1.0)).abs()
