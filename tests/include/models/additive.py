"""A model method defined outside include/reserving/models, registered through the setting ``model_classes``: the
additive (incremental loss ratio) method, the example of docs/ADDING_A_MODEL.md."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from include.reserving import cells as cellsmod
from include.reserving.models import ReservingModel
from include.reserving.models.base import PREDICTION_COLUMNS


class AdditiveDevelopment(ReservingModel):
    """Additive development: each age's expected incremental paid is a rate per unit of an origin's volume.

    Parameters
    ----------
    volume : {"earned_premium", "exposure"}
        The origin's volume measure the incremental paid is proportional to.

    Attributes
    ----------
    rates_ : pandas.Series
        Incremental paid per unit of volume, indexed by (segment, development): the sum of the origins'
        incrementals at that age over the sum of their volumes.
    training_cells_ : pandas.DataFrame
        The cells the model was fitted on.
    """

    method = "additive_development"

    def __init__(self, *, volume: str = "earned_premium"):
        self.volume = volume

    @classmethod
    def search_grid(cls) -> list[dict[str, Any]]:
        return [{"method": cls.method, "params": {}}, {"method": cls.method, "params": {"volume": "exposure"}}]

    def fit(self, cells: pd.DataFrame) -> AdditiveDevelopment:
        if self.volume not in ("earned_premium", "exposure"):
            raise ValueError(f"volume must be 'earned_premium' or 'exposure', not {self.volume!r}")
        cells = cellsmod.normalise(cells)
        if cells[self.volume].isna().any():
            raise ValueError(f"additive development needs {self.volume} on every cell")
        steps = cells.assign(increment=cellsmod.incrementals(cells))
        sums = steps.groupby(["segment", "development"])[["increment", self.volume]].sum()
        self.rates_ = (sums["increment"] / sums[self.volume]).rename("rate")
        self.training_cells_ = cells
        return self

    def predict(self, cells: pd.DataFrame) -> pd.DataFrame:
        """The completed square: from each origin's latest paid, every later age adds volume x the age's rate."""
        self._check_fitted()
        cells = cellsmod.normalise(cells)
        rows = []
        for (segment, origin), group in cells.groupby(["segment", "origin"], sort=True):
            observed = dict(zip(group["development"], group["paid"], strict=True))
            volume = float(group[self.volume].iloc[-1])
            rates = self.rates_.loc[segment]
            paid = float(group["paid"].iloc[-1])
            for age in sorted({*observed, *rates.index}):
                if age in observed:
                    rows.append((segment, origin, age, observed[age], True))
                elif age > group["development"].iloc[-1]:
                    paid += volume * float(rates[age])
                    rows.append((segment, origin, age, paid, False))
            rows.append((segment, origin, cellsmod.ULTIMATE_DEVELOPMENT, paid, False))
        return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)

    def _std_err(self, cells: pd.DataFrame, prediction: pd.DataFrame) -> pd.Series:
        """No standard error is defined for this method."""
        index = pd.MultiIndex.from_frame(cells[["segment", "origin"]].drop_duplicates())
        return pd.Series(np.nan, index=index)
