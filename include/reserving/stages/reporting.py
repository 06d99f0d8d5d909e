"""The reporting group: the PDF reserve report from the published rows (so report and warehouse agree), and the
e-mails to the chief actuary."""

from __future__ import annotations

import logging
from pathlib import Path

from include.reserving import artifacts, notify
from include.reserving.publish import TOTALS
from include.reserving.stages import RunFacts
from include.reserving.warehouse import drift as drift_store
from include.reserving.warehouse import plausibility as plausibility_store
from include.reserving.warehouse import quality as quality_store
from include.reserving.warehouse import reconciliation as reconciliation_store
from include.reserving.warehouse import registry, reserves, runs
from include.reserving.warehouse.cells import load_cells, origin_months

log = logging.getLogger(__name__)


def report(facts: RunFacts, published: dict) -> dict:
    """Render the reserve report PDF for V into the run's artifact folder."""
    from include.reserving.presentation.report import render_reserve_report
    from include.reserving.report_content import report_data

    engine = facts.engine()
    v = facts.valuation_date
    current = reserves.current_version(engine, v)
    if current is None:
        raise LookupError(f"no current publication for {v}: nothing to report (held numbers are never reported)")
    # V's current version: this run's once signed off or within tolerance (published["status"] may say held)
    published = {**published, **{k: current[k] for k in ("version", "status", "model_version")}}
    previous_v = reserves.previous_valuation(engine, v)
    rows = reserves.current_reserves(engine, v)
    models = rows.groupby("segment")["model_version"].first()
    data = report_data(
        valuation_date=v,
        published=published,
        line_specs={segment: registry.get(engine, version).spec for segment, version in models.items()},
        reserves=rows,
        previous_reserves=reserves.current_reserves(engine, previous_v) if previous_v else None,
        previous_valuation_date=previous_v,
        cells=load_cells(engine, v, facts.basis),
        backtest=line_backtests(engine, v),
        quality=quality_store.results_frame(engine, v, facts.basis),
        drift=drift_store.drift_metrics(engine, v, facts.basis),
        plausibility=plausibility_store.results(engine, v, facts.basis),
        health=runs.runs_up_to(engine, v),
        reconciliation=reconciliation_store.results_frame(engine, v, facts.basis),
        movements=reserves.movements(engine, v, current["run_id"]),
        ranges=reserves.ranges_of(engine, v, current["version"]),
        cv_floor=facts.settings.cv_floor,
        origin_months=origin_months(engine, v, facts.basis),
    )
    uri = artifacts.join(facts.run_dir, "report")
    local = artifacts.writable_dir(uri)
    path = render_reserve_report(data, local / f"reserve_report_{v:%Y-%m-%d}.pdf")
    artifacts.publish_dir(local, uri)
    log.info("reserve report for %s (%s): %s", v, data.status, path)
    totals = {k: None if current[k] is None else float(current[k]) for k in TOTALS}
    return {
        "report_uri": artifacts.join(uri, Path(path).name),
        "status": data.status,
        "local_path": str(path),
        **totals,
    }


def send_email(facts: RunFacts, subject: str, body: str, attachments: list[str]) -> dict:
    """E-mail the recipients through the SMTP connection; an undefined connection skips with a clear reason."""
    conn_id = facts.settings.smtp_conn_id
    if not notify.connection_defined(conn_id):
        return {"sent": False, "reason": f"SMTP connection {conn_id!r} is not defined: nothing was e-mailed"}
    local = [str(artifacts.local_dir(a.rsplit("/", 1)[0]) / a.rsplit("/", 1)[1]) for a in attachments]
    notify.send_report_email(conn_id, facts.settings.report_recipients, subject, body, local)
    return {"sent": True, "recipients": list(facts.settings.report_recipients), "subject": subject}


def email_report(facts: RunFacts, reported: dict) -> dict:
    """E-mail the report to the chief actuary (skipped with a reason when SMTP is not configured)."""
    from include.reserving.presentation.emails import report_email

    mail = report_email(facts.valuation_date, reported["status"], totals={k: reported.get(k) for k in TOTALS})
    return send_email(facts, mail.subject, mail.body, [reported["report_uri"]])


def line_backtests(engine, valuation_date):
    """V's backtest rows of each line's champion and challenger (as the promotion decisions name them), one pair a
    line; a version's rows on lines it does not compete on, and the overall rows (each line has its own pair), are
    left out."""
    bt = registry.backtests(engine, valuation_date)
    pairs = set()
    for row in registry.decisions_at(engine, valuation_date):
        pairs |= {(row.segment, row.champion_version), (row.segment, row.challenger_version)}
    keep = [(segment, version) in pairs for segment, version in zip(bt["segment"], bt["model_version"], strict=True)]
    return bt[keep].reset_index(drop=True)
