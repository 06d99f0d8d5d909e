"""The governance group: the challenger's model card (written and e-mailed before anyone is asked), and the
actuary's decision recorded (promotion on approval)."""

from __future__ import annotations

import logging
from pathlib import Path

from include.reserving import approval, artifacts, governance
from include.reserving.domain import Decision
from include.reserving.governance import ModelEntry
from include.reserving.presentation.instruction import ApprovalInstruction
from include.reserving.stages import RunFacts
from include.reserving.stages.reporting import send_email
from include.reserving.stages.training import fit_and_register
from include.reserving.warehouse import decisions, registry
from include.reserving.warehouse import drift as drift_store
from include.reserving.warehouse.cells import load_cells

log = logging.getLogger(__name__)


def model_card(facts: RunFacts, evaluation: dict, trained_reasons: list[str] | None = None) -> dict:
    """Write the challenger's model card (Markdown + PDF) before the approval sensor starts."""
    import pandas as pd

    from include.reserving.methods import describe_rule
    from include.reserving.models import build_model
    from include.reserving.presentation.model_card import CANDIDATE_COLUMNS, ModelCardData, write_model_card

    engine = facts.engine()
    challenger = registry.get(engine, evaluation["challenger_version"])
    # issued with the card: only a value quoting it, written after now, can decide (a retry keeps the code)
    issued = decisions.issue(engine, decisions.MODEL, facts.valuation_date, challenger.model_version, facts.run_id)
    champion = registry.get(engine, evaluation["champion_version"]) if evaluation.get("champion_version") else None
    cells = load_cells(engine, facts.valuation_date, facts.basis)
    model = build_model(challenger.spec)
    card = ModelCardData(
        model_version=challenger.model_version,
        spec=challenger.spec,
        code_sha=challenger.code_version,
        hyperparameters=model.get_spec()["params"],
        features=tuple(model.features()),
        valuation_date=facts.valuation_date,
        data_row_count=challenger.train_rows,
        data_hash=challenger.data_hash,
        segments=tuple(sorted(cells["segment"].unique())),
        basis=facts.basis,
        origin_first=min(cells["origin"]),
        origin_last=max(cells["origin"]),
        max_development=int(cells["development"].max()),
        holdout_diagonals=facts.settings.backtest_diagonals,
        candidates=pd.DataFrame((challenger.metrics or {}).get("search", []), columns=CANDIDATE_COLUMNS),
        champion_version=champion.model_version if champion else None,
        champion_spec=champion.spec if champion else None,
        evaluation=registry.backtests(engine, facts.valuation_date),
        reserve_impact=unpaid_by_line(engine, facts, cells, challenger, champion),
        selection_rule=describe_rule(facts.settings),
        decision=evaluation["decision"],
        decision_reason=evaluation["reason"],
        promotion_delta=evaluation["delta"],
        drift=drift_store.drift_metrics(engine, facts.valuation_date, facts.basis),
        retrain_reason="; ".join(trained_reasons or []),
        approval_timeout_hours=facts.settings.approval_timeout_seconds / 3600,
        approval_code=issued.code,
    )
    uri = artifacts.join(facts.run_dir, "model_card")
    local = artifacts.writable_dir(uri)
    md_path, pdf_path = write_model_card(card, local)
    artifacts.publish_dir(local, uri)
    return {
        "model_card_uri": artifacts.join(uri, Path(pdf_path).name),
        "markdown_uri": artifacts.join(uri, Path(md_path).name),
        "local_pdf": str(pdf_path),
        "model_version": challenger.model_version,
        "approval_code": issued.code,
    }


def unpaid_by_line(engine, facts: RunFacts, cells, challenger: ModelEntry, champion: ModelEntry | None):
    """Unpaid by line on V's cells under the challenger, the champion's spec refitted on them (the routine refit that
    reserves the month if the challenger is not approved; registered, so that refit reuses it) and paid chain ladder
    (the fallback spec): ``segment, challenger, champion, paid_cl`` (``champion`` NaN with no champion)."""
    import pandas as pd

    from include.reserving.models import build_model, load_model

    def unpaid(model) -> pd.Series:
        return model.totals(cells).set_index("segment")["unpaid"]

    columns = {"challenger": unpaid(load_model(artifacts.local_dir(challenger.artifact_uri)))}
    if champion is not None:
        refitted = fit_and_register(engine, facts, champion.spec, cells)
        columns["champion"] = unpaid(load_model(artifacts.local_dir(refitted.artifact_uri)))
    columns["paid_cl"] = unpaid(build_model(governance.FALLBACK_SPEC).fit(cells))
    frame = pd.DataFrame(columns).reindex(columns=["challenger", "champion", "paid_cl"])
    return frame.rename_axis("segment").reset_index()


def email_model_card(facts: RunFacts, card: dict) -> dict:
    """E-mail the model card with the approval instruction to the chief actuary."""
    from include.reserving.presentation.emails import model_card_email

    first_model = registry.champion(facts.engine()) is None
    mail = model_card_email(
        facts.valuation_date, card["model_version"], card.get("approval_code"), first_model=first_model
    )
    return send_email(facts, mail.subject, mail.body, [card["model_card_uri"]])


def _what_reserves(engine) -> str:
    """What reserves the month when the challenger was not approved: the champion, or (first runs) the fallback."""
    if registry.champion(engine) is not None:
        return "champion kept"
    return (
        f"no champion yet: preliminary reserves from the {governance.FALLBACK_NAME}; a later run (force_retrain) "
        "trains a challenger again and asks for a new decision"
    )


def apply_approval(facts: RunFacts, evaluation: dict, outcome: dict, alert=None) -> dict:
    """Record the actuary's decision (or the timeout) and promote on approval, in one transaction; every outcome is
    audited. A re-run keeps the recorded decision as it is and only completes what it implies (idempotent).

    ``outcome`` is the sensor's: ``by`` the Airflow user who wrote the decision, ``decided_at`` when Airflow logged
    the write (UTC); a timeout has neither."""
    engine = facts.engine()
    version = evaluation["challenger_version"]
    recorded = registry.decide(
        engine,
        facts.valuation_date,
        version,
        outcome.get("decision", Decision.TIMEOUT),
        approval.approval_key(facts.valuation_date),
        decided_by=outcome.get("by"),
        comment=outcome.get("comment"),
        decided_at=approval.decided_at(outcome),
        run_id=facts.run_id,
    )
    decision, by = recorded.decision, recorded.decided_by
    if decision == Decision.APPROVE:
        message = f"Model {version} approved by {by} and promoted to champion for {facts.valuation_date}"
    elif decision == Decision.REJECT:
        message = f"Model {version} rejected by {by} for {facts.valuation_date}: {_what_reserves(engine)}"
    else:
        message = (
            f"Approval of model {version} for {facts.valuation_date} timed out: {_what_reserves(engine)}. "
            + ApprovalInstruction(facts.valuation_date, version, _code(engine, facts, version)).text
        )
    if not recorded.newly_recorded:
        message = f"(already recorded as approvals.id={recorded.approval_id}) {message}"
    log.info(message)
    if alert is not None:
        alert(message)
    return {
        "decision": str(decision),
        "model_version": version,
        "approval_id": recorded.approval_id,
        "promoted": recorded.promoted,
        "message": message,
    }


def _code(engine, facts: RunFacts, version: str) -> str | None:
    issued = decisions.issued(engine, decisions.MODEL, facts.valuation_date, version, facts.run_id)
    return issued.code if issued else None
