"""The governance group: the challenger's model card (written and e-mailed before anyone is asked), and the
actuary's decision recorded (promotion on approval)."""

from __future__ import annotations

import logging
from pathlib import Path

from include.reserving import approval, artifacts, governance
from include.reserving.domain import Decision, Promotion
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
    """Write the month's model card (Markdown + PDF): each line's challenger against its champion, the lines sent to
    approval; before the approval sensor starts."""
    import pandas as pd

    from include.reserving.backtest import canonical
    from include.reserving.ingest import cells_hash
    from include.reserving.methods import describe_rule
    from include.reserving.models import build_model
    from include.reserving.presentation.model_card import (
        LINE_COLUMNS,
        SEARCH_COLUMNS,
        Challenger,
        ModelCardData,
        write_model_card,
    )

    engine = facts.engine()
    proposal = evaluation["challenger_version"]
    # issued with the card: only a value quoting it, written after now, can decide (a retry keeps the code)
    issued = decisions.issue(engine, decisions.MODEL, facts.valuation_date, proposal, facts.run_id)
    cells = load_cells(engine, facts.valuation_date, facts.basis)
    lines = pd.DataFrame(evaluation["lines"])
    # from the XCom dicts, not the frame: there a line without a challenger has NaN, which is truthy
    challenged = {str(line["segment"]): v for line in evaluation["lines"] if (v := line["challenger_version"])}
    challengers = []
    for version in sorted(set(challenged.values())):
        entry = registry.get(engine, version)
        model = build_model(entry.spec)
        challengers.append(
            Challenger(
                model_version=version,
                spec=entry.spec,
                code_sha=entry.code_version,
                hyperparameters=model.get_spec()["params"],
                features=tuple(model.features()),
                lines=tuple(sorted(line for line, v in challenged.items() if v == version)),
            )
        )
    # the search is recorded with the challengers the training run registered (an older version may lack it)
    recorded = [(registry.get(engine, c.model_version).metrics or {}).get("search") for c in challengers]
    search = pd.DataFrame(next((s for s in recorded if s), []), columns=SEARCH_COLUMNS)
    specs = {c.model_version: canonical(c.spec) for c in challengers}
    bias = search.set_index(["segment", "spec"])["bias"] if not search.empty else pd.Series(dtype=float)

    def bias_of(segment: str, spec: str | None) -> float | None:
        return float(bias[(segment, spec)]) if spec is not None and (segment, spec) in bias.index else None

    lines["challenger_bias"] = [bias_of(r.segment, specs.get(r.challenger_version)) for r in lines.itertuples()]
    lines["baseline_bias"] = [bias_of(r.segment, canonical(governance.FALLBACK_SPEC)) for r in lines.itertuples()]
    card = ModelCardData(
        model_version=proposal,
        challengers=tuple(challengers),
        valuation_date=facts.valuation_date,
        data_row_count=len(cells),
        data_hash=cells_hash(cells),
        segments=tuple(sorted(cells["segment"].unique())),
        basis=facts.basis,
        origin_first=min(cells["origin"]),
        origin_last=max(cells["origin"]),
        max_development=int(cells["development"].max()),
        holdout_diagonals=facts.settings.backtest_diagonals,
        search=search,
        lines=lines[LINE_COLUMNS],
        promotion_delta=evaluation["delta"],
        bias_margin=facts.settings.promotion_bias_margin,
        reserve_impact=unpaid_by_line(engine, facts, cells, challenged, current_champions(engine, cells)),
        selection_rule=describe_rule(facts.settings),
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
        "model_version": proposal,
        "approval_code": issued.code,
        "lines": list(card.asked),
    }


def current_champions(engine, cells) -> dict[str, ModelEntry]:
    """The champions of V's segments: those of segments cut otherwise (another segment_by) reserve nothing here."""
    return {s: entry for s, entry in registry.champions(engine).items() if s in set(cells["segment"])}


def unpaid_by_line(engine, facts: RunFacts, cells, challengers: dict[str, str], champions: dict[str, ModelEntry]):
    """Unpaid by line on V's cells under the line's challenger, the line's champion's spec refitted on them (the
    routine refit that reserves the line if its challenger is not approved; registered, so that refit reuses it) and
    paid chain ladder (the fallback spec): ``segment, challenger, champion, paid_cl`` (NaN where a line has none).
    Each model is fitted or loaded once, whatever the number of its lines."""
    import pandas as pd

    from include.reserving.models import build_model, load_model

    loaded: dict[str, pd.Series] = {}

    def unpaid_of(version: str) -> pd.Series:
        if version not in loaded:
            model = load_model(artifacts.local_dir(registry.get(engine, version).artifact_uri))
            loaded[version] = model.totals(cells).set_index("segment")["unpaid"]
        return loaded[version]

    refits = {}
    for champion in champions.values():
        key = governance.spec_hash(champion.spec)
        if key not in refits:
            refits[key] = fit_and_register(engine, facts, champion.spec, cells).model_version
    paid_cl = build_model(governance.FALLBACK_SPEC).fit(cells).totals(cells).set_index("segment")["unpaid"]
    rows = []
    for segment in sorted(cells["segment"].unique()):
        challenger, champion = challengers.get(segment), champions.get(segment)
        refit = refits[governance.spec_hash(champion.spec)] if champion else None
        rows.append(
            {
                "segment": segment,
                "challenger": unpaid_of(challenger).get(segment) if challenger else float("nan"),
                "champion": unpaid_of(refit).get(segment) if refit else float("nan"),
                "paid_cl": paid_cl.get(segment),
            }
        )
    return pd.DataFrame(rows, columns=["segment", "challenger", "champion", "paid_cl"])


def email_model_card(facts: RunFacts, card: dict, evaluation: dict | None = None) -> dict:
    """E-mail the model card with the approval instruction, line by line, to the chief actuary."""
    from include.reserving.presentation.emails import model_card_email

    champions = registry.champions(facts.engine())
    asked = [
        {**line, "has_champion": line["segment"] in champions}
        for line in (evaluation or {}).get("lines", [])
        if line["decision"] == Promotion.PROMOTE
    ]
    mail = model_card_email(
        facts.valuation_date, card["model_version"], card.get("approval_code"), first_model=not champions, lines=asked
    )
    return send_email(facts, mail.subject, mail.body, [card["model_card_uri"]])


def _what_reserves(engine, line: str) -> str:
    """What reserves a line whose challenger was not approved: its champion, or (first runs) the fallback."""
    if registry.champion_of(engine, line) is not None:
        return "its champion kept"
    return (
        f"no champion yet: preliminary reserves from the {governance.FALLBACK_NAME}; a later run (force_retrain) "
        "trains a challenger again and asks for a new decision"
    )


def apply_approval(facts: RunFacts, evaluation: dict, outcome: dict, alert=None) -> dict:
    """Record the actuary's decision on each line of the card (or the timeout) and promote each approved line's
    challenger on that line, one transaction per line; every outcome is audited. A re-run keeps the recorded
    decisions as they are and only completes what they imply (idempotent).

    ``outcome`` is the sensor's: ``decision`` for every line of the card, ``lines`` the lines it decides otherwise,
    ``by`` the Airflow user who wrote the decision, ``decided_at`` when Airflow logged the write (UTC); a timeout has
    neither."""
    engine = facts.engine()
    proposal = evaluation["challenger_version"]
    default = outcome.get("decision", Decision.TIMEOUT)
    per_line, messages = {}, []
    for line, version in sorted((evaluation.get("promote") or {}).items()):
        recorded = registry.decide(
            engine,
            facts.valuation_date,
            version,
            (outcome.get("lines") or {}).get(line, default),
            approval.approval_key(facts.valuation_date),
            segment=line,
            decided_by=outcome.get("by"),
            comment=outcome.get("comment"),
            decided_at=approval.decided_at(outcome),
            run_id=facts.run_id,
        )
        decision, by = recorded.decision, recorded.decided_by
        if decision == Decision.APPROVE:
            message = f"{line}: model {version} approved by {by} and promoted to the line's champion"
        elif decision == Decision.REJECT:
            message = f"{line}: model {version} rejected by {by}: {_what_reserves(engine, line)}"
        else:
            message = f"{line}: approval of model {version} timed out: {_what_reserves(engine, line)}"
        if not recorded.newly_recorded:
            message = f"(already recorded as approvals.id={recorded.approval_id}) {message}"
        messages.append(message)
        per_line[line] = {
            "decision": str(decision),
            "model_version": version,
            "approval_id": recorded.approval_id,
            "promoted": recorded.promoted,
        }
    decided = {d["decision"] for d in per_line.values()}
    message = f"Decisions for {facts.valuation_date} on {proposal}: " + "; ".join(messages)
    if Decision.TIMEOUT in decided:
        asked = tuple(sorted(per_line))
        message += (
            ". " + ApprovalInstruction(facts.valuation_date, proposal, _code(engine, facts, proposal), asked).text
        )
    log.info(message)
    if alert is not None:
        alert(message)
    return {
        # one word for the whole card when every line got the same decision, else "mixed"
        "decision": decided.pop() if len(decided) == 1 else "mixed",
        "model_version": proposal,
        "lines": per_line,
        "promoted": sorted(line for line, d in per_line.items() if d["promoted"]),
        "message": message,
    }


def _code(engine, facts: RunFacts, version: str) -> str | None:
    issued = decisions.issued(engine, decisions.MODEL, facts.valuation_date, version, facts.run_id)
    return issued.code if issued else None
