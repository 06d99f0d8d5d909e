"""The estimator contract every reserving model follows, and what they share (ultimates, ranges, persistence)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator

from include.reserving import cells as cellsmod

SPEC_FILE = "spec.json"
TRAINING_CELLS_FILE = "training_cells.json"
PREDICTION_COLUMNS = ["segment", "origin", "development", "paid", "observed"]
ULTIMATE_COLUMNS = ["segment", "origin", "latest", "ultimate", "unpaid", "std_err", "p75", "p95"]


def reserve_percentiles(reserve: np.ndarray, std_err: np.ndarray, quantiles: tuple[float, ...]) -> list[np.ndarray]:
    """Reserve percentiles from a mean and a standard error.

    A lognormal with the given mean and standard deviation where the reserve is positive (reserves are skewed);
    a normal otherwise; NaN where the standard error is undefined.

    Examples
    --------
    >>> [round(float(p[0]), 2) for p in reserve_percentiles(np.array([100.0]), np.array([0.0]), (0.75,))]
    [100.0]
    """
    reserve = np.asarray(reserve, dtype=float)
    std_err = np.asarray(std_err, dtype=float)
    positive = reserve > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma2 = np.where(positive, np.log1p((std_err / np.where(positive, reserve, 1.0)) ** 2), np.nan)
        mu = np.where(positive, np.log(np.where(positive, reserve, 1.0)) - sigma2 / 2, np.nan)
    out = []
    for q in quantiles:
        z = stats.norm.ppf(q)
        lognormal = np.exp(mu + z * np.sqrt(sigma2))
        out.append(np.where(positive, lognormal, reserve + z * std_err))
    return out


class ReservingModel(BaseEstimator):
    """Base of every reserving model: a scikit-learn estimator with shared ``ultimates``, spec and persistence.

    ``get_params``, ``set_params``, ``repr`` and ``sklearn.base.clone`` come from ``BaseEstimator``. Subclasses set
    ``method``, store their keyword-only hyperparameters in ``__init__`` under their own names and nothing else
    (validation belongs in ``fit``), and implement ``fit(cells)`` (returning ``self``, learned attributes ending in
    ``_``, ``training_cells_`` set last), ``predict(cells)`` and ``_std_err(cells, prediction)``. Models with state
    beyond their training cells override ``_save_state`` and ``_load_state``; ``search_grid`` lists the specs the
    training search tries. A subclass is buildable from a spec once registered
    (:func:`include.reserving.models.register_method`; docs/ADDING_A_MODEL.md).
    """

    method: ClassVar[str]

    @classmethod
    def search_grid(cls) -> list[dict[str, Any]]:
        """The specs the training search tries for this method (``backtest.default_candidates``): its defaults."""
        return [{"method": cls.method, "params": {}}]

    def includes_tail(self) -> bool:
        """Whether :meth:`ultimates` include development beyond the oldest age of the data (a tail). Models project
        to that age by default; the methods then apply the line's paid tail to the model column."""
        return False

    def complexity(self) -> float:
        """Where the spec sits between chain ladder (0, the simplest) and a fully learned model, for the search's
        one-standard-error rule (the simplest candidate within one standard error of the best wins). Only the order
        matters; a method that does not say ranks with the learned models that nest chain ladder (2)."""
        return 2.0

    def get_spec(self) -> dict[str, Any]:
        """The JSON-able spec ``{"method": ..., "params": {...}}`` that :func:`build_model` turns back into a model."""
        return {"method": self.method, "params": json.loads(json.dumps(self.get_params(deep=False)))}

    def features(self) -> list[str]:
        """The names of the features a machine-learning model learns from (none for a chain ladder)."""
        return []

    def __sklearn_is_fitted__(self) -> bool:
        """Whether ``fit`` completed (what ``sklearn.utils.validation.check_is_fitted`` asks)."""
        # a failed fit can leave other learned attributes behind, never training_cells_ (set last)
        return hasattr(self, "training_cells_")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(cells) first")

    def fit(self, cells: pd.DataFrame) -> ReservingModel:
        raise NotImplementedError

    def predict(self, cells: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    def _std_err(self, cells: pd.DataFrame, prediction: pd.DataFrame) -> pd.Series:
        """Standard error of each origin's ultimate, indexed by (segment, origin)."""
        raise NotImplementedError

    def ultimates(self, cells: pd.DataFrame) -> pd.DataFrame:
        """Ultimate, unpaid (ultimate minus latest paid) and its range per segment and origin.

        The models project paid amounts, so what they reserve is the unpaid (case reserves plus IBNR); the split
        needs incurred and is made on publication (:func:`include.reserving.publish.reserve_rows`).

        Parameters
        ----------
        cells : pandas.DataFrame
            Cells frame to project (usually the training cells).

        Returns
        -------
        pandas.DataFrame
            Columns ``segment, origin, latest, ultimate, unpaid, std_err, p75, p95``; ``latest`` is the latest paid;
            ``std_err`` is NaN where the model defines none; ``std_err``, ``p75``/``p95`` are of the unpaid. A
            part-elapsed origin's ultimate is the elapsed share of its projected period (:func:`cells.period_elapsed`),
            while :meth:`predict` projects the whole period.
        """
        cells = cellsmod.normalise(cells)
        prediction = self.predict(cells)
        # cells are sorted by key, so the last cell of an origin is its latest evaluation
        latest = cells.groupby(["segment", "origin"])["paid"].last()
        ultimate = prediction[prediction["development"] == cellsmod.ULTIMATE_DEVELOPMENT].set_index(
            ["segment", "origin"]
        )["paid"]
        # a part-elapsed origin is projected on the development of complete periods, which includes the accidents of
        # the rest of its period; what is reserved at V are the accidents to V: the elapsed share (exposure even
        # over the period, as its earned premium is)
        period = cellsmod.origin_months(self.training_cells_)
        elapsed = cellsmod.period_elapsed(cells, period).reindex(ultimate.index)
        out = pd.DataFrame({"latest": latest.reindex(ultimate.index), "ultimate": ultimate * elapsed})
        out["unpaid"] = out["ultimate"] - out["latest"]
        out["std_err"] = self._std_err(cells, prediction).reindex(out.index).astype(float) * elapsed
        out["p75"], out["p95"] = reserve_percentiles(out["unpaid"].to_numpy(), out["std_err"].to_numpy(), (0.75, 0.95))
        return out.reset_index()[ULTIMATE_COLUMNS]

    def _total_std_err(self, cells: pd.DataFrame, ultimates: pd.DataFrame) -> pd.Series:
        """Standard error of each segment's total reserve; by default origins are taken as independent."""
        return ultimates.groupby("segment")["std_err"].apply(lambda s: float(np.sqrt((s**2).sum(min_count=1))))

    def totals(self, cells: pd.DataFrame) -> pd.DataFrame:
        """Per-segment totals of :meth:`ultimates`: columns ``segment, latest, ultimate, unpaid, std_err, p75, p95``."""
        ultimates = self.ultimates(cells)
        out = ultimates.groupby("segment")[["latest", "ultimate", "unpaid"]].sum()
        out["std_err"] = self._total_std_err(cellsmod.normalise(cells), ultimates).reindex(out.index).astype(float)
        out["p75"], out["p95"] = reserve_percentiles(out["unpaid"].to_numpy(), out["std_err"].to_numpy(), (0.75, 0.95))
        return out.reset_index()[["segment", *ULTIMATE_COLUMNS[2:]]]

    def save(self, directory: str | Path) -> dict[str, str]:
        """Write the spec and fitted state (JSON only, no pickle) into ``directory``.

        Returns
        -------
        dict
            File role to path, e.g. ``{"spec": ".../spec.json", "training_cells": ..., "booster": ...}``.
        """
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {"spec": directory / SPEC_FILE, "training_cells": directory / TRAINING_CELLS_FILE}
        paths["spec"].write_text(json.dumps(self.get_spec(), indent=2, sort_keys=True))
        paths["training_cells"].write_text(json.dumps(cellsmod.to_records(self.training_cells_)))
        paths.update(self._save_state(directory))
        return {role: str(path) for role, path in paths.items()}

    def _save_state(self, directory: Path) -> dict[str, Path]:
        """Write state beyond spec and training cells; the default has none."""
        return {}

    def _load_state(self, directory: Path, training_cells: pd.DataFrame) -> None:
        """Restore fitted state; by default re-fit on the stored training cells (chain ladder is deterministic)."""
        self.fit(training_cells)

    @classmethod
    def load(cls, directory: str | Path) -> ReservingModel:
        """Restore a model written by :meth:`save`; it predicts exactly what the saved model predicted."""
        from include.reserving.models import build_model

        directory = Path(directory)
        model = build_model(json.loads((directory / SPEC_FILE).read_text()))
        if cls is not ReservingModel and not isinstance(model, cls):
            raise TypeError(f"{directory} holds a {type(model).__name__}, not a {cls.__name__}")
        training_cells = cellsmod.from_records(json.loads((directory / TRAINING_CELLS_FILE).read_text()))
        model._load_state(directory, training_cells)
        return model
