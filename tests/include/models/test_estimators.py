"""The estimator contract every method shares: specs that round-trip byte for byte."""

from __future__ import annotations

import json

import pytest

from include.reserving import backtest
from include.reserving.models import METHODS, build_model

# Canonical JSON of build_model(spec).get_spec(), computed before the estimators subclassed BaseEstimator: the
# registry stores and hashes specs, so a changed string would change model version ids.
PINNED = {
    '{"method":"chain_ladder","params":{}}': (
        '{"method":"chain_ladder","params":{"average":"volume","n_periods":-1,"sigma_interpolation":"log-linear",'
        '"tail":null}}'
    ),
    '{"method":"chain_ladder","params":{"n_periods":5}}': (
        '{"method":"chain_ladder","params":{"average":"volume","n_periods":5,"sigma_interpolation":"log-linear",'
        '"tail":null}}'
    ),
    '{"method":"chain_ladder","params":{"average":"simple"}}': (
        '{"method":"chain_ladder","params":{"average":"simple","n_periods":-1,"sigma_interpolation":"log-linear",'
        '"tail":null}}'
    ),
    '{"method":"chain_ladder","params":{"sigma_interpolation":"mack","tail":{"curve":"exponential"}}}': (
        '{"method":"chain_ladder","params":{"average":"volume","n_periods":-1,"sigma_interpolation":"mack",'
        '"tail":{"curve":"exponential"}}}'
    ),
    '{"method":"xgboost_development","params":{}}': (
        '{"method":"xgboost_development","params":{"average":"volume","incurred":true,"learning_rate":0.05,'
        '"max_depth":3,"min_child_weight":5.0,"n_estimators":300,"n_jobs":1,"random_state":0,"reg_lambda":1.0,'
        '"residual_folds":2,"subsample":0.8,"target":"log_factor_residual"}}'
    ),
    '{"method":"xgboost_development","params":{"target":"increment"}}': (
        '{"method":"xgboost_development","params":{"average":"volume","incurred":true,"learning_rate":0.05,'
        '"max_depth":3,"min_child_weight":5.0,"n_estimators":300,"n_jobs":1,"random_state":0,"reg_lambda":1.0,'
        '"residual_folds":2,"subsample":0.8,"target":"increment"}}'
    ),
    '{"method":"blend","params":{}}': (
        '{"method":"blend","params":{"base":null,"by":"age","challenger":null,"credibility":10.0,"folds":2,'
        '"random_state":0,"weight":null}}'
    ),
    '{"method":"blend","params":{"challenger":{"method":"xgboost_development","params":{"max_depth":4}}}}': (
        '{"method":"blend","params":{"base":null,"by":"age","challenger":{"method":"xgboost_development",'
        '"params":{"max_depth":4}},"credibility":10.0,"folds":2,"random_state":0,"weight":null}}'
    ),
}


def canonical(spec: dict) -> str:
    """The registry's canonical JSON (``registry.canonical_spec``)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize("spec", PINNED)
def test_spec_json_is_pinned_and_round_trips(spec):
    built = build_model(json.loads(spec)).get_spec()
    assert canonical(built) == PINNED[spec]
    assert canonical(build_model(built).get_spec()) == PINNED[spec]


def test_every_default_and_candidate_spec_is_pinned():
    defaults = [{"method": method, "params": {}} for method in METHODS]
    assert {canonical(spec) for spec in [*defaults, *backtest.default_candidates()]} <= set(PINNED)
