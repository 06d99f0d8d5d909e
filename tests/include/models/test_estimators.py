"""The estimator contract every method shares: scikit-learn parameters and cloning, specs that round-trip byte for
byte."""

from __future__ import annotations

import inspect
import json

import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from include.reserving import backtest
from include.reserving.models import METHODS, Blend, ChainLadder, build_model

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
    '{"method":"cape_cod","params":{}}': (
        '{"method":"cape_cod","params":{"average":"volume","decay":1.0,"n_periods":-1}}'
    ),
    '{"method":"cape_cod","params":{"decay":0.75}}': (
        '{"method":"cape_cod","params":{"average":"volume","decay":0.75,"n_periods":-1}}'
    ),
    '{"method":"cape_cod","params":{"decay":0.5}}': (
        '{"method":"cape_cod","params":{"average":"volume","decay":0.5,"n_periods":-1}}'
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
    '{"method":"xgboost_development","params":{"target":"cl_residual"}}': (
        '{"method":"xgboost_development","params":{"average":"volume","incurred":true,"learning_rate":0.05,'
        '"max_depth":3,"min_child_weight":5.0,"n_estimators":300,"n_jobs":1,"random_state":0,"reg_lambda":1.0,'
        '"residual_folds":2,"subsample":0.8,"target":"cl_residual"}}'
    ),
    '{"method":"xgboost_development","params":{"incurred":false}}': (
        '{"method":"xgboost_development","params":{"average":"volume","incurred":false,"learning_rate":0.05,'
        '"max_depth":3,"min_child_weight":5.0,"n_estimators":300,"n_jobs":1,"random_state":0,"reg_lambda":1.0,'
        '"residual_folds":2,"subsample":0.8,"target":"log_factor_residual"}}'
    ),
    '{"method":"xgboost_development","params":{"max_depth":2}}': (
        '{"method":"xgboost_development","params":{"average":"volume","incurred":true,"learning_rate":0.05,'
        '"max_depth":2,"min_child_weight":5.0,"n_estimators":300,"n_jobs":1,"random_state":0,"reg_lambda":1.0,'
        '"residual_folds":2,"subsample":0.8,"target":"log_factor_residual"}}'
    ),
    '{"method":"xgboost_development","params":{"max_depth":4}}': (
        '{"method":"xgboost_development","params":{"average":"volume","incurred":true,"learning_rate":0.05,'
        '"max_depth":4,"min_child_weight":5.0,"n_estimators":300,"n_jobs":1,"random_state":0,"reg_lambda":1.0,'
        '"residual_folds":2,"subsample":0.8,"target":"log_factor_residual"}}'
    ),
    '{"method":"xgboost_development","params":{"learning_rate":0.025}}': (
        '{"method":"xgboost_development","params":{"average":"volume","incurred":true,"learning_rate":0.025,'
        '"max_depth":3,"min_child_weight":5.0,"n_estimators":300,"n_jobs":1,"random_state":0,"reg_lambda":1.0,'
        '"residual_folds":2,"subsample":0.8,"target":"log_factor_residual"}}'
    ),
    '{"method":"xgboost_development","params":{"learning_rate":0.1}}': (
        '{"method":"xgboost_development","params":{"average":"volume","incurred":true,"learning_rate":0.1,'
        '"max_depth":3,"min_child_weight":5.0,"n_estimators":300,"n_jobs":1,"random_state":0,"reg_lambda":1.0,'
        '"residual_folds":2,"subsample":0.8,"target":"log_factor_residual"}}'
    ),
    # the search's blends with chain ladder (backtest.blended_candidates) are registered like any spec
    (
        '{"method":"blend","params":{"challenger":{"method":"xgboost_development","params":{"incurred":false}},'
        '"weight":0.25}}'
    ): (
        '{"method":"blend","params":{"base":null,"by":"age","challenger":{"method":"xgboost_development",'
        '"params":{"incurred":false}},"credibility":10.0,"folds":2,"random_state":0,"weight":0.25}}'
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


# a non-default, quick-to-fit configuration of each method
QUICK = {
    "chain_ladder": {"n_periods": 5, "tail": {"curve": "exponential"}},
    "cape_cod": {"decay": 0.75},
    "xgboost_development": {"n_estimators": 20, "residual_folds": 0},
    "blend": {
        "challenger": {"method": "xgboost_development", "params": {"n_estimators": 20, "residual_folds": 0}},
        "weight": 0.5,
    },
}


@pytest.fixture(scope="module", params=sorted(METHODS))
def fitted(request, raa_cells):
    return build_model({"method": request.param, "params": QUICK[request.param]}).fit(raa_cells)


def test_every_method_has_a_quick_configuration():
    assert set(QUICK) == set(METHODS)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_get_params_lists_exactly_the_keyword_only_init_args(method):
    cls = METHODS[method]
    args = [p for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"]
    assert all(p.kind is p.KEYWORD_ONLY for p in args)
    assert cls().get_params(deep=True) == {p.name: p.default for p in args}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_clone_is_an_equal_unfitted_copy(method):
    model = METHODS[method](**QUICK[method])
    copy = clone(model)
    assert type(copy) is type(model) and copy is not model
    assert copy.get_params() == model.get_params() and copy.get_spec() == model.get_spec()
    with pytest.raises(NotFittedError):
        check_is_fitted(copy)


def test_a_fitted_models_clone_is_not_fitted(fitted, raa_cells):
    check_is_fitted(fitted)
    copy = clone(fitted)
    assert copy.get_spec() == fitted.get_spec()  # fitting left the hyperparameters alone
    assert not [name for name in vars(copy) if name.endswith("_")]
    with pytest.raises(RuntimeError, match="not fitted"):
        copy.predict(raa_cells)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_set_params_changes_a_hyperparameter_and_returns_self(method):
    model = METHODS[method]()
    name, value = next(iter(QUICK[method].items()))
    assert model.set_params(**{name: value}) is model
    assert model.get_params()[name] == value
    with pytest.raises(ValueError, match="Invalid parameter"):
        model.set_params(no_such_parameter=1)


def test_repr_shows_the_changed_hyperparameters():
    assert repr(ChainLadder()) == "ChainLadder()"
    assert repr(ChainLadder(n_periods=5)) == "ChainLadder(n_periods=5)"
    assert repr(Blend(weight=0.5)) == "Blend(weight=0.5)"


def test_blend_clone_deep_copies_its_component_specs():
    blend = Blend(**QUICK["blend"])
    copy = clone(blend)
    assert copy.challenger == blend.challenger and copy.challenger is not blend.challenger
    copy.challenger["params"]["n_estimators"] = 99
    assert blend.challenger["params"]["n_estimators"] == 20
    # the components are specs, not estimators: no nested "challenger__..." parameters
    assert blend.get_params(deep=True) == blend.get_params(deep=False)


def test_features_name_what_the_machine_learning_models_learn_from():
    xgb_features = [
        "development",
        "paid_ratio",
        "cl_increment",
        "pooled_cl_increment",
        "additive",
        "pooled_additive",
        "outstanding_ratio",
        "paid_to_incurred",
    ]
    assert ChainLadder().features() == []
    assert build_model({"method": "xgboost_development", "params": {}}).features() == xgb_features
    assert build_model({"method": "xgboost_development", "params": {"incurred": False}}).features() == xgb_features[:6]
    assert Blend().features() == xgb_features  # its chain-ladder base adds none
