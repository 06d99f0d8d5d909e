"""Reserving models behind one estimator API, built from JSON specs.

>>> model = build_model({"method": "chain_ladder", "params": {"sigma_interpolation": "mack"}})
>>> model.get_spec()["params"]["sigma_interpolation"]
'mack'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from include.reserving.models.base import ReservingModel
from include.reserving.models.blend import Blend
from include.reserving.models.chain_ladder import ChainLadder
from include.reserving.models.xgboost_development import XGBoostDevelopment

METHODS: dict[str, type[ReservingModel]] = {
    ChainLadder.method: ChainLadder,
    XGBoostDevelopment.method: XGBoostDevelopment,
    Blend.method: Blend,
}


def build_model(spec: dict[str, Any]) -> ReservingModel:
    """Build an unfitted model from a spec ``{"method": ..., "params": {...}}``.

    Raises
    ------
    ValueError
        If the method is unknown or a parameter is not one of the method's hyperparameters.
    """
    method = spec.get("method")
    if method not in METHODS:
        raise ValueError(f"unknown model method {method!r}: use one of {sorted(METHODS)}")
    cls = METHODS[method]
    params = dict(spec.get("params") or {})
    unknown = sorted(set(params) - set(cls().get_params(deep=False)))
    if unknown:
        raise ValueError(f"unknown parameters {unknown} for method {method!r}")
    return cls(**params)


model_from_spec = build_model


def load_model(directory: str | Path) -> ReservingModel:
    """Restore any model written by ``model.save(directory)``."""
    return ReservingModel.load(directory)


__all__ = [
    "METHODS",
    "Blend",
    "ChainLadder",
    "ReservingModel",
    "XGBoostDevelopment",
    "build_model",
    "load_model",
    "model_from_spec",
]
