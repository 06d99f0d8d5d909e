"""XGBoost development model: learns the next period's paid development across all segments at once.

Each training row is an observed step of an origin from age ``d`` to ``d + grain``. By default the target is the log
of the step's link ratio over the segment's chain-ladder factor, so the model is the chain ladder plus a correction
learned across segments (other targets: see ``target``). Amounts are put on a common footing by the origin's scale
(earned premium, else exposure, else the chain-ladder ultimate). Features put the chain ladder and the additive
(incremental loss ratio) method side by side so the trees learn when to trust which: development age, paid loss
ratio to date, the segment's and the pooled chain-ladder increment, and the segment's and pooled average incremental
loss ratio at that age. The lower triangle is projected recursively from each origin's latest paid. Standard errors
come from out-of-fold residuals of the one-step predictions (folds by origin), accumulated over the remaining steps
as if independent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from include.reserving import cells as cellsmod
from include.reserving.models.base import PREDICTION_COLUMNS, ReservingModel
from include.reserving.models.chain_ladder import ChainLadder

BOOSTER_FILE = "booster.json"
STATE_FILE = "xgboost_state.json"
TARGETS = ("increment", "cl_residual", "log_factor_residual")
FEATURES = ["development", "paid_ratio", "cl_increment", "pooled_cl_increment", "additive", "pooled_additive"]
INCURRED_FEATURES = ["outstanding_ratio", "paid_to_incurred"]
# age-to-age factors outside this range come from near-empty cells and would dominate the CL features
_FACTOR_RANGE = (0.5, 20.0)
# origins at which a segment's own incurred link ratio gets half the credibility
_INCURRED_CREDIBILITY = 3.0


class XGBoostDevelopment(ReservingModel):
    """Cross-segment XGBoost development model, projected recursively.

    Parameters
    ----------
    n_estimators, max_depth, learning_rate, subsample, min_child_weight, reg_lambda
        XGBoost hyperparameters.
    average : str
        Link ratio average of the chain-ladder features (see :class:`ChainLadder`).
    target : {"increment", "cl_residual", "log_factor_residual"}
        What the trees learn: the incremental loss ratio itself; its difference from the segment's chain-ladder
        increment; or the log of the step's link ratio over the segment's chain-ladder factor (scale-free). The
        residual targets make the model the chain ladder plus a learned correction, so it falls back to it.
    incurred : bool
        Also learn from case incurred: the case reserve outstanding (incurred less paid) in scale units and paid over
        incurred. Future incurred is projected with the pooled incurred link ratios, so the recursion can go on;
        cells without incurred leave these features missing (XGBoost routes missing values itself).
    residual_folds : int
        Folds (by origin) for the out-of-fold residuals behind the standard errors; 0 uses in-sample residuals.
    random_state : int
        Seed: the same data, parameters and seed give the same model.
    n_jobs : int
        XGBoost threads.

    Attributes
    ----------
    booster_ : xgboost.XGBRegressor
        The fitted regressor.
    grain_ : int
        Development grain in months.
    ages_ : list of int
        Development ages of the completed square.
    scale_ : pandas.Series
        Scale of each (segment, origin): earned premium, else exposure, else the chain-ladder ultimate.
    factors_ : pandas.DataFrame
        Per segment and age: chain-ladder factor, pooled factor, additive and pooled additive increment.
    target_range_, pooled_range_ : pandas.DataFrame
        Per segment and development age (and per age over the book, for a segment without a step there), the least
        and greatest target observed in training: the projection keeps the trees' output within them.
    residual_var_ : dict of int to float
        Variance of the one-step residual (in scale units) by age.
    training_cells_ : pandas.DataFrame
        The cells the model was fitted on.
    """

    method = "xgboost_development"

    def __init__(
        self,
        *,
        n_estimators: int = 300,
        max_depth: int = 3,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        min_child_weight: float = 5.0,
        reg_lambda: float = 1.0,
        average: str = "volume",
        target: str = "log_factor_residual",
        incurred: bool = True,
        residual_folds: int = 2,
        random_state: int = 0,
        n_jobs: int = 1,
    ):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.average = average
        self.target = target
        self.incurred = incurred
        self.residual_folds = residual_folds
        self.random_state = random_state
        self.n_jobs = n_jobs

    @classmethod
    def search_grid(cls) -> list[dict[str, Any]]:
        """The specs the training search tries: the defaults, the other targets, paid-only features, and one step
        either side of the default tree depth and learning rate (300 trees at 0.025, 0.05, 0.1)."""
        variants = [
            {},
            {"target": "cl_residual"},
            {"target": "increment"},
            {"incurred": False},
            {"max_depth": 2},
            {"max_depth": 4},
            {"learning_rate": 0.025},
            {"learning_rate": 0.1},
        ]
        return [{"method": cls.method, "params": params} for params in variants]

    def complexity(self) -> float:
        """2 for a residual target (chain ladder plus a learned correction: it nests chain ladder), 3 for the
        increment target (development learned from scratch); + 0.5 with the case-incurred features; tree capacity
        (depth, learning rate x trees) moves it by a quarter per doubling."""
        level = 3.0 if self.target == "increment" else 2.0
        level += 0.5 if self.incurred else 0.0
        capacity = np.log2(self.max_depth / 3.0) + np.log2(self.learning_rate * self.n_estimators / 15.0)
        return float(level + 0.25 * capacity)

    def features(self) -> list[str]:
        return FEATURES + INCURRED_FEATURES if self.incurred else list(FEATURES)

    def _regressor(self) -> xgb.XGBRegressor:
        return xgb.XGBRegressor(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            min_child_weight=self.min_child_weight,
            reg_lambda=self.reg_lambda,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            tree_method="hist",
        )

    def _learn_tables(self, cells: pd.DataFrame) -> None:
        """Scales, ages and the chain-ladder/additive feature tables learned from the training cells."""
        self.grain_ = cellsmod.development_months(cells)
        self.ages_ = sorted(int(a) for a in cells["development"].unique())
        chain_ladder = ChainLadder(average=self.average).fit(cells)
        # a part-elapsed newest origin on the full-period footing of the rest (what its development projects), or its
        # paid-to-scale ratio would look several times the others' at the same age and the trees take it for an outlier
        elapsed = cellsmod.period_elapsed(cells)
        origin_level = cells.groupby(["segment", "origin"])[["earned_premium", "exposure"]].first()
        origin_level = origin_level.div(elapsed, axis=0)
        scale = origin_level["earned_premium"].where(origin_level["earned_premium"] > 0)
        scale = scale.fillna(origin_level["exposure"].where(origin_level["exposure"] > 0))
        if scale.isna().any():
            # projecting the chain ladder is the slow part of fitting, so only when an origin has no premium or exposure
            ultimates = chain_ladder.ultimates(cells).set_index(["segment", "origin"])["ultimate"] / elapsed
            scale = scale.fillna(ultimates.where(ultimates > 0))
        # an origin with nothing to scale by (no premium, exposure or paid) gets its segment's typical scale
        self.scale_ = scale.fillna(scale.groupby(level="segment").transform("median")).fillna(1.0).rename("scale")

        steps = self._steps(cells)
        steps["ratio"] = steps["paid_next"] / steps["paid"].where(steps["paid"] > 0)
        pooled = steps.groupby("development")[["paid", "paid_next", "increment"]].sum()
        counts = steps.groupby("development").size()
        pooled_factor = (pooled["paid_next"] / pooled["paid"].where(pooled["paid"] > 0)).rename("pooled_factor")
        pooled_additive = (steps.groupby("development")["increment"].sum() / counts).rename("pooled_additive")
        additive = steps.groupby(["segment", "development"])["increment"].mean().rename("additive")
        factors = chain_ladder.ldf_.rename(columns={"ldf": "factor"}).set_index(["segment", "development"])
        table = pd.MultiIndex.from_product([chain_ladder.segments_, self.ages_], names=["segment", "development"])
        tables = pd.DataFrame(index=table).join(factors).join(additive)
        tables = tables.join(pooled_factor, on="development").join(pooled_additive, on="development")
        tables["pooled_factor"] = tables["pooled_factor"].fillna(1.0).clip(*_FACTOR_RANGE)
        tables["factor"] = tables["factor"].fillna(tables["pooled_factor"]).clip(*_FACTOR_RANGE)
        tables["pooled_additive"] = tables["pooled_additive"].fillna(0.0)
        tables["additive"] = tables["additive"].fillna(tables["pooled_additive"])
        with_incurred = steps[(steps["incurred"] > 0) & steps["incurred_next"].notna()]
        # incurred link ratios carry incurred through the projection: the segment's volume-weighted one, credibility
        # weighted (by its number of origins) in log space with the pooled one
        pooled_incurred = with_incurred.groupby("development")[["incurred", "incurred_next"]].sum()
        own_incurred = with_incurred.groupby(["segment", "development"]).agg(
            incurred=("incurred", "sum"), incurred_next=("incurred_next", "sum"), origins=("incurred", "size")
        )
        pooled = np.log(pooled_incurred["incurred_next"] / pooled_incurred["incurred"]).rename("pooled_incurred")
        own = np.log((own_incurred["incurred_next"] / own_incurred["incurred"]).clip(*_FACTOR_RANGE))
        tables = tables.join(own.rename("own_incurred")).join(own_incurred["origins"]).join(pooled, on="development")
        origins = tables.pop("origins")
        credibility = (origins / (origins + _INCURRED_CREDIBILITY)).fillna(0.0)
        log_factor = tables.pop("pooled_incurred").fillna(0.0)
        log_factor = credibility * tables.pop("own_incurred").fillna(log_factor) + (1 - credibility) * log_factor
        tables["incurred_factor"] = np.exp(log_factor).clip(*_FACTOR_RANGE)
        self.factors_ = tables.reset_index()
        # the trees' output is kept within what the segment showed at each age: at the oldest ages a handful of steps
        # (often no development at all) share leaves with young ages and with other segments' long development, and a
        # projection compounds any excess over many steps no backtest fold reaches (a fully paid origin given a year
        # of development)
        steps = self._learning_steps(steps)
        targets = steps[["segment", "development"]].assign(target=self._target(steps))
        self.target_range_ = targets.groupby(["segment", "development"])["target"].agg(["min", "max"])
        self.pooled_range_ = targets.groupby("development")["target"].agg(["min", "max"])

    def _steps(self, cells: pd.DataFrame) -> pd.DataFrame:
        """Observed one-grain steps: paid at ``development`` and the next age, increment in scale units."""
        columns = ["segment", "origin", "development", "paid", "incurred"]
        nxt = cells[columns].copy()
        nxt["development"] -= self.grain_
        steps = cells[columns].merge(
            nxt.rename(columns={"paid": "paid_next", "incurred": "incurred_next"}), on=cellsmod.KEY_COLUMNS
        )
        scale = self.scale_.reindex(pd.MultiIndex.from_frame(steps[["segment", "origin"]])).to_numpy()
        steps["scale"] = scale
        steps["increment"] = (steps["paid_next"] - steps["paid"]) / scale
        return steps

    def _features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Feature matrix for rows with ``segment, development, paid, incurred, scale``."""
        merged = frame[["segment", "development", "paid", "incurred", "scale"]].merge(
            self.factors_, how="left", on=["segment", "development"]
        )
        ratio = merged["paid"] / merged["scale"]
        features = pd.DataFrame(
            {
                "development": merged["development"].astype(float),
                "paid_ratio": ratio,
                "cl_increment": ratio * (merged["factor"] - 1.0),
                "pooled_cl_increment": ratio * (merged["pooled_factor"] - 1.0),
                "additive": merged["additive"],
                "pooled_additive": merged["pooled_additive"],
                "outstanding_ratio": (merged["incurred"] - merged["paid"]) / merged["scale"],
                "paid_to_incurred": merged["paid"] / merged["incurred"].where(merged["incurred"] > 0),
            }
        )
        return features[self.features()].to_numpy(dtype=float)

    def fit(self, cells: pd.DataFrame) -> XGBoostDevelopment:
        """Learn the feature tables and fit the regressor on every observed step of ``cells``; returns ``self``."""
        cells = cellsmod.normalise(cells)
        self._learn_tables(cells)
        steps = self._steps(cells)
        if steps.empty:
            raise ValueError("cells hold no origin with two successive ages: nothing to learn development from")
        steps = self._learning_steps(steps)
        features, target = self._features(steps), self._target(steps)
        self.booster_ = self._regressor().fit(features, target)
        # residuals in scale units whatever the target, so the standard error is in money once scaled back
        expected = self._next_paid(steps, self._oof_predictions(steps, features, target))
        residuals = (steps["paid_next"].to_numpy() - expected) / steps["scale"].to_numpy()
        self.residual_var_ = {
            int(age): float(np.mean(r**2)) for age, r in pd.Series(residuals).groupby(steps["development"].to_numpy())
        }
        self.training_cells_ = cells
        return self

    def _learning_steps(self, steps: pd.DataFrame) -> pd.DataFrame:
        """The steps the trees learn from (a link ratio needs positive paid at both ages)."""
        if self.target not in TARGETS:
            raise ValueError(f"target={self.target!r} is invalid: use one of {TARGETS}")
        if self.target == "log_factor_residual":
            return steps[(steps["paid"] > 0) & (steps["paid_next"] > 0)].reset_index(drop=True)
        return steps

    def _predict_step(self, state: pd.DataFrame) -> np.ndarray:
        """The trees' output for each row of ``state``, within the range of the targets observed at its age."""
        prediction = self.booster_.predict(self._features(state))
        # the segment's own range at that age; the book's where the segment has no step there (a young line); the
        # book's widest at an age no segment has a step at
        own = self.target_range_.reindex(pd.MultiIndex.from_frame(state[["segment", "development"]])).to_numpy()
        book = self.pooled_range_.reindex(state["development"].to_numpy()).to_numpy()
        low, high = np.where(np.isnan(own), book, own).T
        low = np.where(np.isnan(low), self.pooled_range_["min"].min(), low)
        high = np.where(np.isnan(high), self.pooled_range_["max"].max(), high)
        return np.clip(prediction, low, high)

    def _target(self, steps: pd.DataFrame) -> np.ndarray:
        factor = steps.merge(self.factors_, how="left", on=["segment", "development"])["factor"].to_numpy()
        if self.target == "log_factor_residual":
            return np.log(steps["paid_next"].to_numpy() / steps["paid"].to_numpy()) - np.log(factor)
        increment = steps["increment"].to_numpy()
        if self.target == "cl_residual":
            return increment - steps["paid"].to_numpy() / steps["scale"].to_numpy() * (factor - 1.0)
        return increment

    def _next_paid(self, state: pd.DataFrame, prediction: np.ndarray) -> np.ndarray:
        """Paid one grain after each row of ``state`` (segment, development, paid, scale) given the trees' output."""
        merged = state[["segment", "development"]].merge(self.factors_, how="left", on=["segment", "development"])
        paid, scale = state["paid"].to_numpy(), state["scale"].to_numpy()
        if self.target == "log_factor_residual":
            # an origin with nothing paid yet develops additively: a link ratio has nothing to multiply
            additive = paid + scale * merged["additive"].to_numpy()
            return np.where(paid > 0, paid * merged["factor"].to_numpy() * np.exp(prediction), additive)
        if self.target == "cl_residual":
            return paid * merged["factor"].to_numpy() + scale * prediction
        return paid + scale * prediction

    def _oof_predictions(self, steps: pd.DataFrame, features: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Out-of-fold one-step predictions (folds by origin rank), or in-sample ones when ``residual_folds`` is 0."""
        if self.residual_folds < 2:
            return self.booster_.predict(features)
        fold = steps["origin"].rank(method="dense").to_numpy().astype(int) % self.residual_folds
        out = np.empty(len(steps))
        for k in range(self.residual_folds):
            held = fold == k
            if held.all() or not held.any():
                out[held] = self.booster_.predict(features[held])
                continue
            out[held] = self._regressor().fit(features[~held], target[~held]).predict(features[held])
        return out

    def predict(self, cells: pd.DataFrame) -> pd.DataFrame:
        """Completed square of cumulative paid (same frame as :meth:`ChainLadder.predict`), projected recursively."""
        self._check_fitted()
        cells = cellsmod.normalise(cells)
        unknown = sorted(set(cells["segment"]) - set(self.factors_["segment"]))
        if unknown:
            raise ValueError(f"cells hold segments {unknown} the model was not fitted on")
        # tail, not last: last would take an earlier age's incurred where the latest one is missing
        latest = cells.groupby(["segment", "origin"]).tail(1)[["segment", "origin", "development", "paid", "incurred"]]
        latest = latest.reset_index(drop=True)
        scale = self.scale_.reindex(pd.MultiIndex.from_frame(latest[["segment", "origin"]]))
        # an origin unseen in training is scaled by its own premium or exposure if it has one, else its latest paid
        own = cells.groupby(["segment", "origin"])[["earned_premium", "exposure", "paid"]].first()
        own[["earned_premium", "exposure"]] = own[["earned_premium", "exposure"]].div(
            cellsmod.period_elapsed(cells, cellsmod.origin_months(self.training_cells_)), axis=0
        )
        own_scale = own["earned_premium"].where(own["earned_premium"] > 0).fillna(own["exposure"]).fillna(own["paid"])
        latest["scale"] = scale.fillna(own_scale.reindex(scale.index)).fillna(1.0).to_numpy()
        projected = []
        state = latest.copy()
        last_age = self.ages_[-1]
        while True:
            state = state[state["development"] < last_age]
            if state.empty:
                break
            factors = state[["segment", "development"]].merge(self.factors_, how="left", on=["segment", "development"])
            state = state.assign(
                development=state["development"] + self.grain_,
                paid=self._next_paid(state, self._predict_step(state)),
                incurred=state["incurred"].to_numpy() * factors["incurred_factor"].to_numpy(),
            )
            projected.append(state[["segment", "origin", "development", "paid"]])
        square = cells[["segment", "origin", "development", "paid"]].assign(observed=True)
        if projected:
            square = pd.concat([square, pd.concat(projected).assign(observed=False)])
        ultimate = square.sort_values(cellsmod.KEY_COLUMNS).groupby(["segment", "origin"], as_index=False).last()
        ultimate = ultimate.assign(development=cellsmod.ULTIMATE_DEVELOPMENT, observed=False)
        square = pd.concat([square, ultimate], ignore_index=True)
        return square[PREDICTION_COLUMNS].sort_values(cellsmod.KEY_COLUMNS).reset_index(drop=True)

    def _std_err(self, cells: pd.DataFrame, prediction: pd.DataFrame) -> pd.Series:
        """Out-of-fold residual variance of each remaining step, summed (steps taken as independent), in money."""
        latest = cells.groupby(["segment", "origin"])["development"].max()
        scale = self.scale_.reindex(latest.index)
        variance = []
        for age in latest.to_numpy():
            remaining = [a for a in self.residual_var_ if age <= a < self.ages_[-1]]
            variance.append(sum(self.residual_var_[a] for a in remaining))
        return pd.Series(np.sqrt(variance) * scale.to_numpy(), index=latest.index)

    def _save_state(self, directory: Path) -> dict[str, Path]:
        booster = directory / BOOSTER_FILE
        self.booster_.save_model(booster)
        state = directory / STATE_FILE
        state.write_text(json.dumps({"residual_var": {str(k): v for k, v in self.residual_var_.items()}}))
        return {"booster": booster, "state": state}

    def _load_state(self, directory: Path, training_cells: pd.DataFrame) -> None:
        # the feature tables are a deterministic function of the training cells; the trees are not, so load them
        self._learn_tables(training_cells)
        self.booster_ = self._regressor()
        self.booster_.load_model(directory / BOOSTER_FILE)
        state = json.loads((directory / STATE_FILE).read_text())
        self.residual_var_ = {int(k): float(v) for k, v in state["residual_var"].items()}
        self.training_cells_ = training_cells
