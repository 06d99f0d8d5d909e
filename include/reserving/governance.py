"""Model identity and the promotion rule, as plain functions: canonical specs and their hashes, deterministic version
ids, the registry entry, and the champion/challenger rule. The registry's tables are in warehouse/registry.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

from include.reserving.config import PROJECT_ROOT
from include.reserving.domain import OVERALL, ModelStatus, Promotion

SCORE_EPS = 1e-12  # a challenger exactly delta better (up to float noise) is not better by more than delta
# Reserves PRELIMINARY months while no model was ever approved (e.g. the first challenger rejected or timed out): the
# plain volume-weighted chain ladder, a method every actuary can reproduce; fitted and registered as a candidate, never
# made champion by it.
FALLBACK_SPEC: dict[str, Any] = {"method": "chain_ladder", "params": {}}
FALLBACK_NAME = "chain-ladder fallback"
# "Materially" more biased than chain ladder: a backtest bias (expected less actual emergence over actual; the search
# compares the segments' mean absolute bias) further from zero than chain ladder's by more than this is not promoted
# whatever its score. The default of the ``promotion_bias_margin`` setting.
BIAS_MARGIN = 0.05


def canonical_spec(spec: dict[str, Any]) -> str:
    """The spec as canonical JSON: equal specs give equal strings (and hashes)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def spec_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_spec(spec).encode()).hexdigest()


def model_version_id(spec: dict[str, Any], valuation_date: dt.date, data_hash: str) -> str:
    """Deterministic version id: the same spec fitted on the same data at V is the same version (re-runs)."""
    digest = hashlib.sha256((spec_hash(spec) + data_hash).encode()).hexdigest()[:10]
    return f"{valuation_date:%Y%m%d}-{spec['method']}-{digest}"


@cache
def code_version() -> str:
    """Git SHA of the code that trains (``RESERVING_CODE_VERSION`` in images without .git)."""
    if os.environ.get("RESERVING_CODE_VERSION"):
        return os.environ["RESERVING_CODE_VERSION"]
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


@dataclass(frozen=True)
class ModelEntry:
    model_version: str
    spec: dict[str, Any]
    artifact_uri: str
    trained_valuation_date: dt.date
    basis: str
    train_rows: int
    data_hash: str
    code_version: str
    metrics: dict[str, Any] | None = None
    status: str = ModelStatus.CANDIDATE.value
    method: str = field(default="")

    def __post_init__(self) -> None:
        if not self.method:
            object.__setattr__(self, "method", self.spec["method"])


# --- promotion rule ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromotionDecision:
    valuation_date: dt.date
    champion_version: str | None
    challenger_version: str | None
    champion_score: float | None
    challenger_score: float | None
    delta: float
    decision: str  # promote (pending approval), keep, none
    reason: str
    segment: str = OVERALL  # the line decided: each line's challenger against that line's champion


def materially_more_biased(bias: float, baseline_bias: float, margin: float = BIAS_MARGIN) -> bool:
    """Whether a backtest ``bias`` is further from zero than chain ladder's ``baseline_bias`` by more than ``margin``.

    An unknown bias (NaN: nothing emerged to compare with) is not evidence of bias.
    """
    if bias != bias or baseline_bias != baseline_bias:  # NaN
        return False
    return abs(bias) > abs(baseline_bias) + margin + SCORE_EPS


def decide_promotion(
    valuation_date: dt.date,
    champion_version: str | None,
    champion_score: float | None,
    challenger_version: str | None,
    challenger_score: float | None,
    delta: float,
    *,
    challenger_bias: float | None = None,
    baseline_bias: float | None = None,
    bias_margin: float = BIAS_MARGIN,
    segment: str = OVERALL,
) -> PromotionDecision:
    """Promote iff score(challenger) > score(champion) + delta (scores: higher is better, 1 - WAPE) and the
    challenger's backtest bias is not materially worse than chain ladder's (``baseline_bias``; checked when both
    biases are given).

    No challenger: nothing to decide. No champion yet: the challenger goes to approval like any other.
    """
    biased = (
        challenger_bias is not None
        and baseline_bias is not None
        and materially_more_biased(challenger_bias, baseline_bias, bias_margin)
    )
    if challenger_version is None:
        decision = Promotion.NONE.value
        reason = "no challenger this month (no retraining, or the best spec is the champion's)"
    elif biased:
        decision = Promotion.KEEP.value
        reason = (
            f"challenger bias {challenger_bias:+.4f} is materially worse than chain ladder's {baseline_bias:+.4f} "
            f"(margin {bias_margin})"
        )
    elif champion_version is None:
        decision, reason = Promotion.PROMOTE.value, "no champion yet: the first challenger needs approval"
    elif challenger_score > champion_score + delta + SCORE_EPS:
        decision = Promotion.PROMOTE.value
        reason = f"challenger {challenger_score:.6f} > champion {champion_score:.6f} + delta {delta}"
    else:
        decision = Promotion.KEEP.value
        reason = f"challenger {challenger_score:.6f} <= champion {champion_score:.6f} + delta {delta}"
    return PromotionDecision(
        valuation_date,
        champion_version,
        challenger_version,
        champion_score,
        challenger_score,
        delta,
        decision,
        reason,
        segment,
    )


def proposal_id(valuation_date: dt.date, promote: dict[str, str]) -> str | None:
    """What the approval Variable names for the lines sent to approval (line -> challenger version): the challenger
    itself when one version is proposed on every such line, else an id of the set (deterministic, like versions)."""
    versions = sorted(set(promote.values()))
    if len(versions) <= 1:
        return versions[0] if versions else None
    digest = hashlib.sha256(json.dumps(sorted(promote.items())).encode()).hexdigest()[:10]
    return f"{valuation_date:%Y%m%d}-lines-{digest}"


def evaluation(valuation_date: dt.date, decisions: list[PromotionDecision], delta: float) -> dict[str, Any]:
    """The evaluate stage's summary of V's per-line decisions, for XCom: ``promote`` maps each line sent to approval
    to its challenger, ``challenger_version`` is what the approval names (:func:`proposal_id`), ``decision`` promote
    when any line is sent to approval."""
    promote = {d.segment: d.challenger_version for d in decisions if d.decision == Promotion.PROMOTE}
    if promote:
        decision = Promotion.PROMOTE.value
    elif any(d.challenger_version for d in decisions):
        decision = Promotion.KEEP.value
    else:
        decision = Promotion.NONE.value
    return {
        "valuation_date": valuation_date.isoformat(),
        "decision": decision,
        "challenger_version": proposal_id(valuation_date, promote),
        "promote": promote,
        "delta": delta,
        "lines": [
            {**asdict(d), "valuation_date": d.valuation_date.isoformat(), "decision": str(d.decision)}
            for d in decisions
        ],
        "reason": "; ".join(f"{d.segment}: {d.decision} ({d.reason})" for d in decisions),
    }
