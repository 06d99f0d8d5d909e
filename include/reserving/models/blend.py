"""Blend of two reserving models, weighted by a fixed weight or by a credibility learned from out-of-fold errors.

The blended square is ``(1 - w) * base + w * challenger`` on every projected cell, where ``w`` is the challenger's
weight for the origin. With ``weight`` given, ``w`` is that number for every origin (0 is the base model exactly, 1
the challenger exactly). Otherwise ``w`` depends on the origin's maturity (its latest development age): both
components are re-fitted on the cells before each of the latest ``folds`` calendar diagonals, project the cells
observed since, and the weight that minimises the squared error of the blend (in units of the origin's premium) is
estimated per maturity and shrunk towards the weight of all maturities by credibility ``n / (n + credibility)``.
Only past diagonals of the training cells are used, the same way the backtest's time-series cross-validation is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from include.reserving import cells as cellsmod
from include.reserving.models.base import PREDICTION_COLUMNS, ReservingModel

STATE_FILE = "blend_state.json"
COMPONENTS = ("base", "challenger")
DEFAULT_BASE = {"method": "chain_ladder", "params": {}}
DEFAULT_CHALLENGER = {"method": "xgboost_development", "params": {}}
WEIGHTINGS = ("age", "global")


class Blend(ReservingModel):
    """Credibility-weighted blend of a base model (chain ladder) and a challenger (the XGBoost development model).

    Parameters
    ----------
    base : dict, optional
        Spec of the base model; chain ladder with its defaults when omitted.
    challenger : dict, optional
        Spec of the challenger; ``xgboost_development`` with its defaults when omitted. The components are specs,
        not estimators (so the blend's spec stays JSON): ``clone`` deep-copies them, and ``set_params`` replaces a
        whole spec (``set_params(challenger={...})``; there are no ``challenger__...`` parameters).
    weight : float, optional
        Fixed weight of the challenger in [0, 1]; when omitted, learned from out-of-fold errors.
    by : {"age", "global"}
        Learned weight per origin maturity (latest development age) or one weight for all origins.
    folds : int
        Latest calendar diagonals of the training cells each used once as the cut-off of an out-of-fold fit.
    credibility : float
        Shrinkage of a maturity's weight towards the overall one: ``n / (n + credibility)`` with ``n`` the number of
        origins of that maturity scored out of fold.
    random_state : int
        Seed given to components that take one and whose spec sets none.

    Attributes
    ----------
    base_, challenger_ : ReservingModel
        The fitted components.
    weight_ : float
        Challenger weight of a maturity without a weight of its own (the overall or fixed weight).
    weights_ : dict of int to float
        Challenger weight per maturity (empty for a fixed or global weight).
    training_cells_ : pandas.DataFrame
        The cells the model was fitted on.

    Examples
    --------
    >>> Blend(weight=0.5).get_spec()["params"]["weight"]
    0.5
    """

    method = "blend"

    def __init__(
        self,
        *,
        base: dict[str, Any] | None = None,
        challenger: dict[str, Any] | None = None,
        weight: float | None = None,
        by: str = "age",
        folds: int = 2,
        credibility: float = 10.0,
        random_state: int = 0,
    ):
        self.base = base
        self.challenger = challenger
        self.weight = weight
        self.by = by
        self.folds = folds
        self.credibility = credibility
        self.random_state = random_state

    def component_specs(self) -> dict[str, dict[str, Any]]:
        """The base and challenger specs, defaults filled in and the seed passed on."""
        from include.reserving.models import registered_methods

        methods = registered_methods()
        specs = {}
        for name, spec, default in zip(
            COMPONENTS, (self.base, self.challenger), (DEFAULT_BASE, DEFAULT_CHALLENGER), strict=True
        ):
            spec = json.loads(json.dumps(spec or default))
            if spec.get("method") == self.method:
                raise ValueError(f"{name}: a blend cannot have a blend as a component")
            if spec.get("method") not in methods:
                raise ValueError(f"{name}: unknown model method {spec.get('method')!r}")
            params = spec.setdefault("params", {})
            if "random_state" in methods[spec["method"]]().get_params(deep=False):
                params.setdefault("random_state", self.random_state)
            specs[name] = spec
        return specs

    def includes_tail(self) -> bool:
        return any(m.includes_tail() for m in self._components().values())

    @classmethod
    def search_grid(cls) -> list[dict[str, Any]]:
        """None of its own: the search blends every learned candidate with chain ladder at fixed weights
        (setting ``search_blend_weights``), scored from the components' backtests without a refit."""
        return []

    def complexity(self) -> float:
        """A fixed weight: the components' complexities weighted alike; a learned weight: one more than the more
        complex component (it learns the weights too)."""
        base, challenger = (m.complexity() for m in self._components().values())
        if self.weight is None:
            return max(base, challenger) + 1.0
        return (1.0 - self.weight) * base + self.weight * challenger

    def _components(self) -> dict[str, ReservingModel]:
        from include.reserving.models import build_model

        return {name: build_model(spec) for name, spec in self.component_specs().items()}

    def features(self) -> list[str]:
        """The components' features, in order, each once."""
        return list(dict.fromkeys(f for model in self._components().values() for f in model.features()))

    def fit(self, cells: pd.DataFrame) -> Blend:
        """Fit both components on ``cells`` and the challenger's weight (fixed, or from out-of-fold errors)."""
        cells = cellsmod.normalise(cells)
        if self.weight is not None and not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"weight={self.weight!r} must lie in [0, 1]")
        if self.by not in WEIGHTINGS:
            raise ValueError(f"by={self.by!r} is invalid: use one of {WEIGHTINGS}")
        if self.weight is None and self.folds < 1:
            raise ValueError(f"a learned weight needs folds >= 1, not {self.folds}")
        components = self._components()
        self.base_ = components["base"].fit(cells)
        self.challenger_ = components["challenger"].fit(cells)
        if self.weight is not None:
            self.weight_, self.weights_ = float(self.weight), {}
        else:
            self.weight_, self.weights_ = self._learn_weights(cells)
        self.training_cells_ = cells
        return self

    def _learn_weights(self, cells: pd.DataFrame) -> tuple[float, dict[int, float]]:
        """Challenger weight overall and per maturity from errors on diagonals after each of ``folds`` cut-offs."""
        grain = cellsmod.development_months(cells)
        diagonal = cellsmod.diagonal(cells, grain)
        errors = []
        for cut in range(1, self.folds + 1):
            train, later = cells[diagonal >= cut], cells[diagonal < cut]
            if train["development"].nunique() < 2 or later.empty:
                continue
            fitted = {name: model.fit(train) for name, model in self._components().items()}
            keys = later[cellsmod.KEY_COLUMNS]
            errors_cut = keys.assign(actual=later["paid"].to_numpy())
            for name, model in fitted.items():
                square = model.predict(train).set_index(cellsmod.KEY_COLUMNS)["paid"]
                errors_cut[name] = square.reindex(pd.MultiIndex.from_frame(keys)).to_numpy()
            maturity = train.groupby(["segment", "origin"])["development"].max().rename("maturity")
            errors_cut = errors_cut.join(maturity, on=["segment", "origin"], how="inner")
            errors.append(errors_cut.join(_scale(train), on=["segment", "origin"]))
        if not errors:
            raise ValueError("cells hold too few diagonals to learn a blend weight out of fold: give a fixed weight")
        errors = pd.concat(errors, ignore_index=True).dropna(subset=["base", "challenger"])
        base = (errors["actual"] - errors["base"]) / errors["scale"]
        gap = (errors["challenger"] - errors["base"]) / errors["scale"]
        # the blend's error is base - w * gap, so least squares gives w = sum(base * gap) / sum(gap^2)
        frame = pd.DataFrame({"maturity": errors["maturity"], "cross": base * gap, "gap2": gap**2})
        overall = _weight(frame["cross"].sum(), frame["gap2"].sum(), 0.5)
        if self.by == "global":
            return overall, {}
        weights = {}
        for maturity, group in frame.groupby("maturity"):
            z = len(group) / (len(group) + self.credibility)
            own = _weight(group["cross"].sum(), group["gap2"].sum(), overall)
            weights[int(maturity)] = float(z * own + (1 - z) * overall)
        return overall, weights

    def origin_weights(self, cells: pd.DataFrame) -> pd.Series:
        """Challenger weight of each (segment, origin) of ``cells``, by its maturity."""
        self._check_fitted()
        maturity = cellsmod.normalise(cells).groupby(["segment", "origin"])["development"].max()
        return maturity.map(lambda age: self.weights_.get(int(age), self.weight_)).astype(float).rename("weight")

    def predict(self, cells: pd.DataFrame) -> pd.DataFrame:
        """Completed square of cumulative paid: each projected cell the weighted mean of the components' cells."""
        self._check_fitted()
        cells = cellsmod.normalise(cells)
        base = self.base_.predict(cells).set_index(cellsmod.KEY_COLUMNS)
        challenger = self.challenger_.predict(cells).set_index(cellsmod.KEY_COLUMNS)
        square = base.add_suffix("_base").join(challenger.add_suffix("_challenger"), how="outer")
        weight = self.origin_weights(cells).reindex(square.index.droplevel("development")).to_numpy()
        blended = (1.0 - weight) * square["paid_base"].to_numpy() + weight * square["paid_challenger"].to_numpy()
        # a cell only one component projects keeps that component's value; exact weights keep it exactly
        paid = np.where(weight == 0.0, square["paid_base"], np.where(weight == 1.0, square["paid_challenger"], blended))
        paid = pd.Series(paid, index=square.index).fillna(square["paid_base"])
        square["paid"] = paid.fillna(square["paid_challenger"])
        square["observed"] = square["observed_base"].eq(True) | square["observed_challenger"].eq(True)
        observed = cells.set_index(cellsmod.KEY_COLUMNS)["paid"]
        square.loc[observed.index, "paid"] = observed
        square = square.reset_index()
        return square[PREDICTION_COLUMNS].sort_values(cellsmod.KEY_COLUMNS).reset_index(drop=True)

    def _std_err(self, cells: pd.DataFrame, prediction: pd.DataFrame) -> pd.Series:
        """Weighted mean of the components' standard errors (the components' errors taken as fully correlated)."""
        weight = self.origin_weights(cells)
        base = self.base_._std_err(cells, self.base_.predict(cells)).reindex(weight.index)
        challenger = self.challenger_._std_err(cells, self.challenger_.predict(cells)).reindex(weight.index)
        return (1.0 - weight) * base + weight * challenger

    def _save_state(self, directory: Path) -> dict[str, Path]:
        paths = {}
        for name, model in (("base", self.base_), ("challenger", self.challenger_)):
            paths.update({f"{name}.{role}": Path(path) for role, path in model.save(directory / name).items()})
        state = directory / STATE_FILE
        state.write_text(json.dumps({"weight": self.weight_, "weights": {str(k): v for k, v in self.weights_.items()}}))
        return {**paths, "state": state}

    def _load_state(self, directory: Path, training_cells: pd.DataFrame) -> None:
        self.base_ = ReservingModel.load(directory / "base")
        self.challenger_ = ReservingModel.load(directory / "challenger")
        state = json.loads((directory / STATE_FILE).read_text())
        self.weight_ = float(state["weight"])
        self.weights_ = {int(k): float(v) for k, v in state["weights"].items()}
        self.training_cells_ = training_cells


def _scale(cells: pd.DataFrame) -> pd.Series:
    """Scale of each (segment, origin)'s errors: earned premium, else exposure, else latest paid, else 1."""
    origin = cells.groupby(["segment", "origin"]).agg(
        earned_premium=("earned_premium", "first"), exposure=("exposure", "first"), paid=("paid", "last")
    )
    scale = origin["earned_premium"].where(origin["earned_premium"] > 0)
    scale = scale.fillna(origin["exposure"].where(origin["exposure"] > 0))
    return scale.fillna(origin["paid"].where(origin["paid"] > 0)).fillna(1.0).rename("scale")


def _weight(cross: float, gap2: float, default: float) -> float:
    """Least-squares challenger weight in [0, 1]; ``default`` when the components never disagree."""
    return float(np.clip(cross / gap2, 0.0, 1.0)) if gap2 > 0 else float(default)
