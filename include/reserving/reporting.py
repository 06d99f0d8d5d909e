"""Reporting stages: the model card before approval, the reserve report after publication, the e-mails, and the
pipeline-health record. Numbers are read back from the warehouse (the published rows), so report and warehouse agree.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pandas as pd
from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Engine

from include.reserving import artifacts, registry, schema
from include.reserving.config import load_settings, warehouse_url
from include.reserving.ingest import load_cells
from include.reserving.pipeline import RunFacts
from include.reserving.warehouse.core import make_engine

log = logging.getLogger(__name__)


def _frame(engine: Engine, query) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(query)
        return pd.DataFrame(result.mappings().all(), columns=list(result.keys()))


def backtest_frame(engine: Engine, valuation_date: dt.date) -> pd.DataFrame:
    bt = schema.backtest_results
    return _frame(
        engine,
        select(bt.c.model_version, bt.c.role, bt.c.segment, bt.c.wape, bt.c.rmse)
        .where(bt.c.valuation_date == valuation_date)
        .order_by(bt.c.role, bt.c.segment),
    )


def drift_frame(engine: Engine, valuation_date: dt.date, basis: str) -> pd.DataFrame:
    dm = schema.drift_metrics
    return _frame(
        engine,
        select(dm.c.feature, dm.c.kind, dm.c.psi, dm.c.ks_statistic, dm.c.ks_pvalue, dm.c.breached)
        .where(dm.c.valuation_date == valuation_date, dm.c.basis == basis)
        .order_by(dm.c.feature),
    )


def quality_frame(engine: Engine, valuation_date: dt.date, basis: str) -> pd.DataFrame:
    qr = schema.quality_results
    return _frame(
        engine,
        select(qr.c.expectation, qr.c.column, qr.c.success, qr.c.unexpected_count)
        .where(qr.c.valuation_date == valuation_date, qr.c.basis == basis)
        .order_by(qr.c.check_key),
    )


def health_frame(engine: Engine, valuation_date: dt.date, last: int = 12) -> pd.DataFrame:
    """The last ``last`` recorded runs up to V (by valuation date), for the report's pipeline-health section."""
    pr = schema.pipeline_runs
    frame = _frame(
        engine,
        select(pr.c.run_id, pr.c.valuation_date, pr.c.state, pr.c.duration_seconds, pr.c.failed_task)
        .where(pr.c.valuation_date <= valuation_date)
        .order_by(pr.c.valuation_date.desc(), pr.c.run_id.desc())
        .limit(last),
    )
    return frame.iloc[::-1].reset_index(drop=True)


def selected_factors(cells: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Age-to-age factors shown in the report: the champion's own when it is chain ladder, else volume-weighted."""
    from include.reserving.models import ChainLadder, build_model

    model = build_model(spec) if spec.get("method") == "chain_ladder" else ChainLadder()
    ldf = model.fit(cells).ldf_.copy()
    ages = sorted(cells["development"].unique())
    step = dict(zip(ages[:-1], ages[1:], strict=False))
    ldf["development_to"] = ldf["development"].map(step)
    ldf = ldf.dropna(subset=["development_to"])
    return ldf.rename(columns={"ldf": "factor"})[["segment", "development", "development_to", "factor"]]


def previous_valuation(engine: Engine, valuation_date: dt.date) -> dt.date | None:
    rv = schema.reserve_versions
    with engine.connect() as conn:
        return conn.execute(
            select(rv.c.valuation_date)
            .where(rv.c.valuation_date < valuation_date, rv.c.is_current.is_(True))
            .order_by(rv.c.valuation_date.desc())
            .limit(1)
        ).scalar_one_or_none()


def load_report_data(facts: RunFacts, published: dict):
    """Everything the reserve report shows for V, read from the warehouse."""
    from include.reserving.backtest import actual_vs_expected
    from include.reserving.presentation.report import ReportData
    from include.reserving.publish import current_reserves

    engine = facts.engine()
    v = facts.valuation_date
    reserves = current_reserves(engine, v)
    previous_v = previous_valuation(engine, v)
    cells = load_cells(engine, v, facts.basis)
    champion = registry.get(engine, published["model_version"])
    ave = actual_vs_expected(cells, champion.spec)
    return ReportData(
        valuation_date=v,
        status=published["status"],
        champion_version=published["model_version"],
        publication_version=int(published["version"]),
        reserves=reserves,
        previous_reserves=current_reserves(engine, previous_v) if previous_v else None,
        cells=cells,
        factors=selected_factors(cells, champion.spec),
        actual_vs_expected=ave,
        backtest=backtest_frame(engine, v),
        quality=quality_frame(engine, v, facts.basis),
        drift=drift_frame(engine, v, facts.basis),
        health=health_frame(engine, v),
    )


def stage_report(facts: RunFacts, published: dict) -> dict:
    """Render the reserve report PDF for V into the run's artifact folder."""
    from include.reserving.presentation.report import render_reserve_report

    data = load_report_data(facts, published)
    uri = artifacts.join(facts.run_dir, "report")
    local = artifacts.writable_dir(uri)
    path = render_reserve_report(data, local / f"reserve_report_{facts.valuation_date:%Y-%m-%d}.pdf")
    artifacts.publish_dir(local, uri)
    log.info("reserve report for %s (%s): %s", facts.valuation_date, data.status, path)
    return {"report_uri": artifacts.join(uri, Path(path).name), "status": data.status, "local_path": str(path)}


def stage_model_card(facts: RunFacts, evaluation: dict, trained_reasons: list[str] | None = None) -> dict:
    """Write the challenger's model card (Markdown + PDF) before the approval sensor starts; e-mail it."""
    from include.reserving.presentation.model_card import ModelCardData, write_model_card

    engine = facts.engine()
    challenger = registry.get(engine, evaluation["challenger_version"])
    champion = registry.get(engine, evaluation["champion_version"]) if evaluation.get("champion_version") else None
    cells = load_cells(engine, facts.valuation_date, facts.basis)
    card = ModelCardData(
        model_version=challenger.model_version,
        spec=challenger.spec,
        code_sha=challenger.code_version,
        valuation_date=facts.valuation_date,
        data_row_count=challenger.train_rows,
        data_hash=challenger.data_hash,
        segments=tuple(sorted(cells["segment"].unique())),
        basis=facts.basis,
        origin_first=min(cells["origin"]),
        origin_last=max(cells["origin"]),
        max_development=int(cells["development"].max()),
        holdout_diagonals=facts.settings.backtest_diagonals,
        champion_version=champion.model_version if champion else None,
        champion_spec=champion.spec if champion else None,
        evaluation=backtest_frame(engine, facts.valuation_date),
        decision=evaluation["decision"],
        decision_reason=evaluation["reason"],
        promotion_delta=evaluation["delta"],
        drift=drift_frame(engine, facts.valuation_date, facts.basis),
        retrain_reason="; ".join(trained_reasons or []),
        approval_timeout_hours=facts.settings.approval_timeout_seconds / 3600,
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
    }


def _smtp_defined(conn_id: str) -> bool:
    try:
        from airflow.sdk import BaseHook

        BaseHook.get_connection(conn_id)
    except Exception:
        return False
    return True


def send_email(facts: RunFacts, subject: str, body: str, attachments: list[str]) -> dict:
    """E-mail the recipients through the SMTP connection; an undefined connection skips with a clear reason."""
    from include.reserving.notify import send_report_email

    conn_id = facts.settings.smtp_conn_id
    if not _smtp_defined(conn_id):
        return {"sent": False, "reason": f"SMTP connection {conn_id!r} is not defined: nothing was e-mailed"}
    local = [str(artifacts.local_dir(a.rsplit("/", 1)[0]) / a.rsplit("/", 1)[1]) for a in attachments]
    send_report_email(conn_id, facts.settings.report_recipients, subject, body, local)
    return {"sent": True, "recipients": list(facts.settings.report_recipients), "subject": subject}


def stage_email_report(facts: RunFacts, reported: dict) -> dict:
    from include.reserving.presentation.emails import report_email

    mail = report_email(facts.valuation_date, reported["status"])
    return send_email(facts, mail.subject, mail.body, [reported["report_uri"]])


def stage_email_model_card(facts: RunFacts, card: dict) -> dict:
    from include.reserving.presentation.emails import model_card_email

    mail = model_card_email(facts.valuation_date, card["model_version"])
    return send_email(facts, mail.subject, mail.body, [card["model_card_uri"]])


# --- pipeline health ---------------------------------------------------------------------------------------------


def record_run(
    engine: Engine,
    run_id: str,
    dag_id: str,
    valuation_date: dt.date | None,
    state: str,
    started_at: dt.datetime | None,
    ended_at: dt.datetime | None,
    failed_task: str | None = None,
) -> None:
    """Write (or replace) one run's outcome, duration and failed task."""
    pr = schema.pipeline_runs
    duration = (ended_at - started_at).total_seconds() if started_at and ended_at else None
    naive = [d.replace(tzinfo=None) if d is not None and d.tzinfo else d for d in (started_at, ended_at)]
    with engine.begin() as conn:
        conn.execute(delete(pr).where(pr.c.run_id == run_id))
        conn.execute(
            insert(pr).values(
                run_id=run_id,
                dag_id=dag_id,
                valuation_date=valuation_date,
                state=state,
                started_at=naive[0],
                ended_at=naive[1],
                duration_seconds=duration,
                failed_task=failed_task,
            )
        )


def record_run_from_context(context, state: str) -> None:
    """DAG-level callback body: record the run's outcome; never raises (health must not break a run)."""
    from include.reserving.dates import valuation_date_of_run

    try:
        dag_run = context["dag_run"]
        params = context.get("params") or {}
        try:
            valuation_date = valuation_date_of_run(dag_run.data_interval_end, params.get("valuation_date"))
        except ValueError:
            valuation_date = None
        failed_task = None
        if state == "failed":
            try:
                failed = dag_run.get_task_instances(state="failed")
                failed_task = ", ".join(sorted(ti.task_id for ti in failed)) or None
            except Exception:  # the callback's DagRun may be a lightweight view without task access
                ti = context.get("ti")
                failed_task = getattr(ti, "task_id", None)
        ended = dag_run.end_date or dt.datetime.now(dt.UTC)
        record_run(
            make_engine(warehouse_url(load_settings())),
            dag_run.run_id,
            dag_run.dag_id,
            valuation_date,
            state,
            dag_run.start_date,
            ended,
            failed_task,
        )
    except Exception as exc:
        log.warning("pipeline health not recorded: %s: %s", type(exc).__name__, exc)
