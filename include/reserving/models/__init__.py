"""Reserving models behind one estimator API, built from JSON specs, and the registry of methods.

A method is a :class:`ReservingModel` subclass registered under its ``method`` name. The built-in ones are registered
here; others register without editing this package (docs/ADDING_A_MODEL.md): installed packages through the entry
point group ``reserving.models``, any importable class through the setting ``model_classes``, or code that calls
:func:`register_method` itself. They are found the first time the registry is asked for (:func:`registered_methods`,
:func:`build_model`), so every task process sees the same methods.

>>> model = build_model({"method": "chain_ladder", "params": {"sigma_interpolation": "mack"}})
>>> model.get_spec()["params"]["sigma_interpolation"]
'mack'
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from include.reserving.models.base import ReservingModel
from include.reserving.models.blend import Blend
from include.reserving.models.cape_cod import CapeCod
from include.reserving.models.chain_ladder import ChainLadder
from include.reserving.models.xgboost_development import XGBoostDevelopment

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "reserving.models"
_METHOD_NAME = re.compile(r"[a-z][a-z0-9_]*")  # it goes into model version ids and artifact paths

# The registry, in registration order: the training search tries the methods' grids in this order (ties go to the
# earlier candidate, so the chain ladder wins a draw).
METHODS: dict[str, type[ReservingModel]] = {}
_discovered = False


def register_method(cls: type[ReservingModel]) -> type[ReservingModel]:
    """Register ``cls`` under its ``method`` name (usable as a class decorator); returns ``cls``.

    Raises
    ------
    TypeError
        If ``cls`` is not a ReservingModel subclass, or cannot be built from its defaults into a JSON-able spec.
    ValueError
        If its method name is not lower-case letters, digits and underscores, or another class has it.
    """
    if not (isinstance(cls, type) and issubclass(cls, ReservingModel)):
        raise TypeError(f"{cls!r} is not a subclass of include.reserving.models.ReservingModel")
    name = f"{cls.__module__}.{cls.__qualname__}"
    method = getattr(cls, "method", None)
    if not isinstance(method, str) or not _METHOD_NAME.fullmatch(method):
        raise ValueError(f"{name}: set the class attribute method to a name like 'my_method', not {method!r}")
    other = METHODS.get(method)
    if other is not None and other is not cls:
        raise ValueError(f"{name}: method {method!r} is registered already by {other.__module__}.{other.__qualname__}")
    try:
        json.dumps(cls().get_spec())
    except Exception as exc:
        raise TypeError(f"{name}: {cls.__name__}() must build from its defaults, parameters JSON-able: {exc}") from exc
    METHODS[method] = cls
    return cls


def _import_class(path: str) -> type:
    """``package.module:ClassName`` (or ``package.module.ClassName``) imported."""
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"setting model_classes: {path!r} is not an import path like 'package.module:ClassName'")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"setting model_classes: cannot import {path!r} ({type(exc).__name__}: {exc})") from exc


def discover_methods(model_classes: Iterable[str] | None = None) -> list[str]:
    """Register the methods of the installed entry points (group ``reserving.models``) and of ``model_classes``
    (import paths; default: the setting ``model_classes``). Returns the methods found, in order."""
    global _discovered
    if model_classes is None:
        from include.reserving.config import load_settings

        model_classes = load_settings().model_classes
    found = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry_point.load()
        except Exception as exc:
            raise ValueError(
                f"entry point {entry_point.name!r} ({entry_point.value}) of group {ENTRY_POINT_GROUP} cannot be "
                f"loaded: {type(exc).__name__}: {exc}"
            ) from exc
        found.append(register_method(cls).method)
    found += [register_method(_import_class(path)).method for path in model_classes]
    if found:
        log.info("registered model methods: %s", ", ".join(found))
    _discovered = True
    return found


def registered_methods() -> dict[str, type[ReservingModel]]:
    """Every method, name to class: the built-in ones and, discovered on the first call, the registered ones."""
    if not _discovered:
        discover_methods()
    return METHODS


def build_model(spec: dict[str, Any]) -> ReservingModel:
    """Build an unfitted model from a spec ``{"method": ..., "params": {...}}``.

    Raises
    ------
    ValueError
        If the method is unknown or a parameter is not one of the method's hyperparameters.
    """
    methods = registered_methods()
    method = spec.get("method")
    if method not in methods:
        raise ValueError(
            f"unknown model method {method!r}: use one of {sorted(methods)}, or register it (setting model_classes "
            f"or entry point group {ENTRY_POINT_GROUP}, see docs/ADDING_A_MODEL.md)"
        )
    cls = methods[method]
    params = dict(spec.get("params") or {})
    unknown = sorted(set(params) - set(cls().get_params(deep=False)))
    if unknown:
        raise ValueError(f"unknown parameters {unknown} for method {method!r}")
    return cls(**params)


model_from_spec = build_model


def load_model(directory: str | Path) -> ReservingModel:
    """Restore any model written by ``model.save(directory)``."""
    return ReservingModel.load(directory)


for _builtin in (ChainLadder, CapeCod, XGBoostDevelopment, Blend):
    register_method(_builtin)

__all__ = [
    "ENTRY_POINT_GROUP",
    "METHODS",
    "Blend",
    "CapeCod",
    "ChainLadder",
    "ReservingModel",
    "XGBoostDevelopment",
    "build_model",
    "discover_methods",
    "load_model",
    "model_from_spec",
    "register_method",
    "registered_methods",
]
