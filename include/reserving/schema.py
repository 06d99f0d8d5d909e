"""Every warehouse table, in one place (SQLAlchemy Core). The data contract is in docs/DATA_CONTRACT.md.

``python -m include.reserving.schema [--db URL]`` creates them and migrates tables an older version created; it is
idempotent (existing tables and rows are kept).
Works on SQLite (embedded default) and PostgreSQL (production, CI).
"""

from __future__ import annotations

import argparse

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    column,
    func,
    inspect,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.engine import Engine

metadata = MetaData()

# Money: exact on PostgreSQL (numeric(18,2)); floats in Python so pandas and the models need no conversions.
Money = Numeric(18, 2, asdecimal=False)
# A reserving segment's label: a line of business, or its segment_by attributes joined " | " (e.g. "Motor | North";
# three claim attributes of 32 characters each fit). Issue 16 widened it from 32 (see _segments_by_setting).
SEGMENT_LENGTH = 120
Segment = String(SEGMENT_LENGTH)

# --- Source side: what the claims-system extract looks like ------------------------------------------------------

claims = Table(
    "claims",
    metadata,
    Column("claim_id", String(32), primary_key=True),
    Column("policy_id", String(32), nullable=False),
    Column("line_of_business", String(32), nullable=False),
    Column("claim_type", String(32)),
    Column("accident_date", Date),
    Column("report_date", Date),
    Column("claimant_age", Integer),
    Column("region", String(32)),
)

# No uniqueness on transaction_id: the extract is raw and duplicates are a defect the quality gate must see.
claim_transactions = Table(
    "claim_transactions",
    metadata,
    Column("transaction_id", String(40), nullable=False),
    Column("claim_id", String(32)),
    Column("transaction_date", Date),
    Column("recorded_at", DateTime, nullable=False),
    Column("paid_amount", Money),
    Column("case_reserve_change", Money),
    Column("status", String(16)),
    Index("ix_claim_transactions_claim_id", "claim_id"),
    Index("ix_claim_transactions_transaction_date", "transaction_date"),
    # the monthly ingest reads the rows recorded since the previous month end, and the gate recounts those before it
    Index("ix_claim_transactions_recorded_at", "recorded_at"),
)

earned_exposure = Table(
    "earned_exposure",
    metadata,
    Column("line_of_business", String(32), primary_key=True),
    Column("month", Date, primary_key=True),
    Column("earned_premium", Money, nullable=False),
    Column("exposure_units", Float, nullable=False),
)

# Optional: the general ledger's control totals per line and month, which the month's extract must reconcile to.
finance_control_totals = Table(
    "finance_control_totals",
    metadata,
    Column("line_of_business", String(32), primary_key=True),
    Column("month", Date, primary_key=True),  # first day of the month
    Column("paid_amount", Money, nullable=False),
    Column("case_reserve_movement", Money, nullable=False),
)

# The source tables, in the order the contract checks them (include/reserving/contract.py, docs/DATA_CONTRACT.md).
SOURCE_TABLES = (claims, claim_transactions, earned_exposure, finance_control_totals)

# --- Pipeline side: every row keyed by valuation date (and basis: as recorded at V, or restated) ------------------

snapshots = Table(
    "snapshots",
    metadata,
    Column("valuation_date", Date, primary_key=True),
    Column("basis", String(16), primary_key=True),
    Column("origin_grain", String(16), nullable=False),
    Column("development_grain", String(16), nullable=False),
    Column("claim_count", Integer, nullable=False),
    Column("transaction_count", Integer, nullable=False),
    Column("paid_total", Money, nullable=False),
    Column("cells_hash", String(64), nullable=False),
    Column("run_id", String(250)),
    # the claim attributes the cells' segments are cut by (setting segment_by, comma-separated); NULL: a snapshot
    # taken before the setting, by line of business
    Column("segment_by", String(200)),
)


def _cell_columns() -> list[Column]:
    return [
        Column("valuation_date", Date, nullable=False),
        Column("basis", String(16), nullable=False),
        Column("segment", Segment, nullable=False),
        Column("origin", Date, nullable=False),
        Column("development", Integer, nullable=False),
        Column("paid", Money, nullable=False),
        Column("incurred", Money, nullable=False),
        Column("reported_count", Integer, nullable=False),
        Column("closed_count", Integer, nullable=False),
        Column("earned_premium", Money),
        Column("exposure", Float),
    ]


# One row per observed (segment, origin, development) cell. ``origin`` is the first day of the origin period;
# ``development`` is the age in months at the cell's evaluation date (origin start through the evaluation month,
# inclusive). Evaluation dates step back from V by the development grain, so a month-end that is not a quarter end
# still has a correct latest diagonal (ages 2, 5, 8, ... at the end of May for quarterly origins).
# Amounts are cumulative to the evaluation date.
triangle_cells = Table(
    "triangle_cells",
    metadata,
    *_cell_columns(),
    Index("ux_triangle_cells_key", "valuation_date", "basis", "segment", "origin", "development", unique=True),
)

triangle_cells_staging = Table(
    "triangle_cells_staging",
    metadata,
    Column("load_id", String(64), nullable=False, index=True),
    *_cell_columns(),
)


# Claim-level features as at V (claims reported by V), for the quality gate and drift; stays in the database.
def _snapshot_claim_columns() -> list[Column]:
    return [
        Column("valuation_date", Date, nullable=False),
        Column("basis", String(16), nullable=False),
        Column("claim_id", String(32), nullable=False),
        Column("line_of_business", String(32), nullable=False),
        Column("claim_type", String(32)),
        Column("region", String(32)),
        Column("accident_date", Date),
        Column("report_date", Date),
        Column("claimant_age", Integer),
        Column("report_delay_days", Integer),
        Column("paid_to_date", Money, nullable=False),
        Column("incurred_to_date", Money, nullable=False),
        Column("initial_incurred", Money),
        Column("is_closed", Boolean, nullable=False),
        # closures less reopenings by V (is_closed: above zero), so next month's ingest can add the month's events
        Column("net_closures", Integer),
    ]


snapshot_claims = Table(
    "snapshot_claims",
    metadata,
    *_snapshot_claim_columns(),
    Index("ux_snapshot_claims_key", "valuation_date", "basis", "claim_id", unique=True),
    # drift reads V's claims reported in its windows (about 13 months), not V's whole snapshot (the book's history)
    Index("ix_snapshot_claims_report_date", "valuation_date", "basis", "report_date"),
)

# The book as at V per accident month and calendar month: what each month added (paid, incurred movement, closures
# less reopenings, transactions, claims reported). Triangle cells at any grain are sums of these; the next month end's
# ingest derives its own from them plus the rows recorded since (ingest.py).
cell_increments = Table(
    "cell_increments",
    metadata,
    Column("valuation_date", Date, nullable=False),
    Column("basis", String(16), nullable=False),
    Column("segment", Segment, nullable=False),
    Column("accident_month", Date, nullable=False),
    Column("month", Date, nullable=False),
    Column("paid", Money, nullable=False),
    Column("incurred", Money, nullable=False),
    Column("closed_count", Integer, nullable=False),
    Column("transaction_count", Integer, nullable=False),
    Column("reported_count", Integer, nullable=False),
    Index("ux_cell_increments_key", "valuation_date", "basis", "segment", "accident_month", "month", unique=True),
)

# One row per expectation of a quality-gate run for (V, basis); a re-run replaces the rows of (V, basis).
quality_results = Table(
    "quality_results",
    metadata,
    Column("valuation_date", Date, nullable=False),
    Column("basis", String(16), nullable=False),
    Column("check_key", String(200), nullable=False),  # stable name of the check in the suite (quality/suite.py)
    Column("asset", String(64), nullable=False),
    Column("expectation", String(100), nullable=False),
    Column("column", String(200)),
    Column("description", String()),
    Column("success", Boolean, nullable=False),
    Column("unexpected_count", Integer),
    Column("element_count", Integer),
    Column("examples", String()),  # JSON list of a few unexpected values
    Column("error", String()),  # why the check could not be evaluated (e.g. missing column)
    Column("suite_version", String(32), nullable=False),
    Column("gate_success", Boolean, nullable=False),
    Column("artifact_uri", String(1000)),
    Column("run_id", String(250)),
    Index("ux_quality_results_key", "valuation_date", "basis", "check_key", unique=True),
)

# The month's extract against the finance control totals, per line and measure, for (V, basis); a re-run replaces
# the rows of (V, basis). Without control totals for the month: one row (segment ALL) saying so, passed.
reconciliation_results = Table(
    "reconciliation_results",
    metadata,
    Column("valuation_date", Date, nullable=False),
    Column("basis", String(16), nullable=False),
    Column("run_id", String(250)),
    Column("segment", Segment, nullable=False),
    Column("measure", String(32), nullable=False),  # paid or case_reserve_movement
    Column("extract_value", Money),  # NULL: the line is missing on this side
    Column("control_value", Money),
    Column("difference", Money),
    Column("tolerance", Money),
    Column("passed", Boolean, nullable=False),
    Column("note", String()),
    Index("ux_reconciliation_results_key", "valuation_date", "basis", "segment", "measure", unique=True),
)

# Month-level plausibility: one row per (line, check) of V's month; passed is NULL for a skipped check (too little
# history). A re-run replaces the rows of (V, basis).
plausibility_results = Table(
    "plausibility_results",
    metadata,
    Column("valuation_date", Date, nullable=False),
    Column("basis", String(16), nullable=False),
    Column("run_id", String(250)),
    Column("segment", Segment, nullable=False),
    Column("check", String(64), nullable=False),
    Column("observed", Float),  # NULL when not finite (the detail says what was seen)
    Column("lower", Float),
    Column("upper", Float),
    Column("passed", Boolean),
    Column("detail", String()),
    Index("ux_plausibility_results_key", "valuation_date", "basis", "segment", "check", unique=True),
)

# Plausibility's monthly per-line aggregates of the source as at V (warehouse/history.py): the transactions frame
# (volumes from window_start, a month index; older months only their defect counts) and the claims reported per
# month, outer-joined on (segment, month); in_transactions marks the transactions frame's rows. The next month end's
# run adds its own month to them instead of re-reading the window. A re-run replaces the rows of (V, basis).
monthly_aggregates = Table(
    "monthly_aggregates",
    metadata,
    Column("valuation_date", Date, nullable=False),
    Column("basis", String(16), nullable=False),
    Column("segment", Segment, nullable=False),
    Column("month", Integer, nullable=False),  # months since year 0 (dates.month_index)
    Column("window_start", Integer, nullable=False),
    Column("in_transactions", Boolean, nullable=False),
    Column("rows", Integer),
    Column("paid", Float),
    Column("case_movement", Float),
    Column("largest_paid", Float),
    Column("largest_case_change", Float),
    Column("paid_rows", Integer),
    Column("last_recorded", DateTime),
    Column("median_paid", Float),
    Column("raise_claims", Integer),
    Column("raise_q1", Float),
    Column("raise_median", Float),
    Column("raise_q3", Float),
    Column("recorded_before_dated", Integer),
    Column("bad_status", Integer),
    Column("bad_status_example", String()),
    Column("new_claims", Integer),
    Index("ux_monthly_aggregates_key", "valuation_date", "basis", "segment", "month", unique=True),
)

# Per-feature drift of the claims reported in the month ending V against the reference window.
drift_metrics = Table(
    "drift_metrics",
    metadata,
    Column("valuation_date", Date, nullable=False),
    Column("basis", String(16), nullable=False),
    Column("feature", String(64), nullable=False),
    Column("source_column", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # numeric or categorical
    Column("psi", Float),
    Column("ks_statistic", Float),
    Column("ks_pvalue", Float),
    Column("psi_threshold", Float, nullable=False),
    Column("breached", Boolean, nullable=False),
    Column("reference_start", Date, nullable=False),
    Column("reference_end", Date, nullable=False),
    Column("current_start", Date, nullable=False),
    Column("current_end", Date, nullable=False),
    Column("reference_count", Integer, nullable=False),
    Column("current_count", Integer, nullable=False),
    Column("note", String()),
    Column("detail", String()),  # JSON: bin edges or levels with reference and current shares
    Column("run_id", String(250)),
    Index("ux_drift_metrics_key", "valuation_date", "basis", "feature", unique=True),
)


# --- Governance: model registry, champion history, backtests, promotion decisions, approvals -------------------

MODEL_STATUSES = ("candidate", "champion", "retired", "rejected")

model_registry = Table(
    "model_registry",
    metadata,
    Column("model_version", String(80), primary_key=True),
    Column("method", String(64), nullable=False),
    Column("spec", Text, nullable=False),  # canonical JSON {"method": ..., "params": {...}}
    Column("spec_hash", String(64), nullable=False),
    Column("artifact_uri", String(1000), nullable=False),
    Column("trained_valuation_date", Date, nullable=False),
    Column("basis", String(16), nullable=False),
    Column("train_rows", Integer, nullable=False),
    Column("data_hash", String(64), nullable=False),
    Column("code_version", String(64), nullable=False),
    Column("metrics", Text),  # JSON backtest metrics at registration
    Column("status", String(16), nullable=False),
    Column("registered_run_id", String(250)),
    # status 'champion': the champion of at least one line (line_champions says which)
    CheckConstraint("status IN ('candidate', 'champion', 'retired', 'rejected')", name="ck_model_status"),
)

# One champion per line of business, enforced by the primary key; a cross-segment model (XGBoost learns from every
# line) may be the champion of several lines. Changed only with a champion_history row, in one transaction.
line_champions = Table(
    "line_champions",
    metadata,
    Column("segment", Segment, primary_key=True),
    Column("model_version", String(80), nullable=False),
    Column("valuation_date", Date, nullable=False),  # the valuation at which it became (or was refitted as) champion
    Column("changed_at", DateTime, nullable=False),
)

champion_history = Table(
    "champion_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("valuation_date", Date, nullable=False),
    Column("segment", Segment),  # the line whose champion changed (always set; nullable for the migration)
    Column("model_version", String(80), nullable=False),
    Column("previous_version", String(80)),
    Column("action", String(16), nullable=False),  # promoted (a new spec, approved) or refitted (routine)
    Column("approved_by", String(200)),
    Column("approval_id", Integer),
    Column("changed_at", DateTime, nullable=False),
    Column("run_id", String(250)),
)

backtest_results = Table(
    "backtest_results",
    metadata,
    Column("valuation_date", Date, nullable=False),
    Column("model_version", String(80), nullable=False),
    Column("role", String(16), nullable=False),  # champion or challenger
    Column("segment", Segment, nullable=False),  # ALL for the overall score
    Column("wape", Float),
    Column("rmse", Float),
    Column("held_out_diagonals", Integer, nullable=False),
    Column("run_id", String(250)),
    Index("ux_backtest_results_key", "valuation_date", "model_version", "segment", unique=True),
)

# the margin-delta rule per line: each line's challenger against that line's champion
promotion_decisions = Table(
    "promotion_decisions",
    metadata,
    Column("valuation_date", Date, primary_key=True),
    Column("segment", Segment, primary_key=True),
    Column("champion_version", String(80)),
    Column("challenger_version", String(80)),
    Column("champion_score", Float),
    Column("challenger_score", Float),
    Column("delta", Float, nullable=False),
    Column("decision", String(16), nullable=False),  # promote (pending approval), keep, none
    Column("reason", String(500), nullable=False),
    Column("run_id", String(250)),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("valuation_date", Date, nullable=False),
    Column("model_version", String(80), nullable=False),
    Column("decision", String(16), nullable=False),  # approve, reject, timeout
    Column("decided_by", String(200)),
    Column("decided_at", DateTime, nullable=False),
    Column("comment", Text),
    Column("variable_key", String(250), nullable=False),
    Column("run_id", String(250)),
    Column("segment", Segment),  # the line decided (NULL: a decision made before champions per line, every line)
    # one decision per run and line: a later run may decide again on a (deterministic) version an earlier run
    # rejected, and one challenger championing several lines may be approved on one and rejected on another
    Index("ux_approvals_line", "valuation_date", "model_version", "run_id", "segment", unique=True),
)

# --- Published reserves: versioned per valuation date, exactly one current version ------------------------------

reserve_versions = Table(
    "reserve_versions",
    metadata,
    Column("valuation_date", Date, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("basis", String(16), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("model_version", String(80), nullable=False),
    Column("approval_ref", String(250)),
    Column("status", String(16), nullable=False),  # approved, preliminary or held (never current until signed off)
    Column("is_current", Boolean, nullable=False),
    # totals of the rows; case reserves and IBNR are NULL when any row's incurred is unknown
    Column("unpaid_total", Money, nullable=False),
    Column("case_reserve_total", Money),
    Column("ibnr_total", Money),
    Column("published_at", DateTime, nullable=False),
    Index(
        "ux_reserve_versions_one_current",
        "valuation_date",
        unique=True,
        postgresql_where=text("is_current"),
        sqlite_where=text("is_current = 1"),
    ),
    Index("ux_reserve_versions_run", "valuation_date", "run_id", unique=True),
)


# nullable: rows published before issue 13 were the model's (the migration fills method and model_ultimate)
SELECTION_COLUMNS = {
    "method": String(16),
    "paid_cl_ultimate": Money,
    "incurred_cl_ultimate": Money,
    "bf_ultimate": Money,
    "cape_cod_ultimate": Money,
    "model_ultimate": Money,
    "flags": String(500),
}


def _reserve_columns() -> list[Column]:
    return [
        Column("valuation_date", Date, nullable=False),
        Column("version", Integer, nullable=False),
        Column("segment", Segment, nullable=False),
        Column("origin", Date, nullable=False),
        Column("latest_paid", Money, nullable=False),
        Column("latest_incurred", Money),
        Column("ultimate", Money, nullable=False),
        # unpaid = ultimate - paid = case_reserve + ibnr to the cent; case_reserve = incurred - paid and
        # ibnr = ultimate - incurred are NULL when incurred is unknown
        Column("case_reserve", Money),
        Column("ibnr", Money),
        Column("unpaid", Money, nullable=False),
        # the range of the unpaid: standard error and percentiles
        Column("std_err", Money),
        Column("p75", Money),
        Column("p95", Money),
        Column("model_version", String(80), nullable=False),
        Column("approval_ref", String(250)),
        # the selection (include/reserving/methods.py): the method whose ultimate is published, each method's
        # ultimate beside it, and the diagnostic flags (e.g. "bf: ultimate<incurred"; empty when none)
        *[Column(name, type_) for name, type_ in SELECTION_COLUMNS.items()],
    ]


reserve_results = Table(
    "reserve_results",
    metadata,
    *_reserve_columns(),
    Index("ux_reserve_results_key", "valuation_date", "version", "segment", "origin", unique=True),
)

reserve_results_staging = Table(
    "reserve_results_staging",
    metadata,
    Column("load_id", String(64), nullable=False, index=True),
    *_reserve_columns(),
)

# The range and the selection rule per line and over all lines (segment "Total") of each published version; written
# in the same transaction as the version's rows
reserve_ranges = Table(
    "reserve_ranges",
    metadata,
    Column("valuation_date", Date, nullable=False),
    Column("version", Integer, nullable=False),
    Column("segment", Segment, nullable=False),
    Column("selection_rule", String(300)),  # NULL on the total
    Column("tail_method", String(32)),
    Column("paid_tail_factor", Float),
    Column("incurred_tail_factor", Float),
    Column("cape_cod_elr", Float),
    Column("bf_apriori_loss_ratio", Float),
    Column("range_basis", String(80), nullable=False),  # e.g. "Mack, paid chain ladder"; "independent lines"
    Column("unpaid", Money, nullable=False),
    Column("std_err", Money),
    Column("cv", Float),  # NULL where the unpaid is near zero
    Column("p75", Money),
    Column("p95", Money),
    Index("ux_reserve_ranges_key", "valuation_date", "version", "segment", unique=True),
)

# --- Reserve-movement hold: the analysis of change per line and the numbers sign-off --------------------------

reserve_movements = Table(
    "reserve_movements",
    metadata,
    Column("valuation_date", Date, nullable=False),
    Column("basis", String(16), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("segment", Segment, nullable=False),
    Column("step_order", Integer, nullable=False),
    Column("step", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # opening, movement, closing (they tie), memo
    Column("amount", Money),  # NULL: not known (no previous publication) or a ratio row
    Column("ratio", Float),  # actual / expected emergence on its memo row
    Column("note", String(500)),
    Index("ux_reserve_movements_key", "valuation_date", "run_id", "segment", "step_order", unique=True),
)

signoffs = Table(
    "signoffs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("valuation_date", Date, nullable=False),
    Column("basis", String(16), nullable=False),
    Column("publication_version", Integer, nullable=False),
    Column("decision", String(16), nullable=False),  # approve, reject, timeout
    Column("decided_by", String(200)),
    Column("comment", Text),
    Column("decided_at", DateTime, nullable=False),
    Column("run_id", String(250)),
    Index("ux_signoffs_key", "valuation_date", "publication_version", unique=True),
)

# --- Decision codes: the one-time code of each model card and held-month sign-off ---------------------------------

# Issued with the card (or the held publication) for one run; the decision Variable must quote it, and only a value
# written after issued_at decides. kind: model (approval of a challenger) or numbers (sign-off of a held version).
decision_codes = Table(
    "decision_codes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("valuation_date", Date, nullable=False),
    Column("version", String(80), nullable=False),  # model version, or the held publication version as text
    Column("run_id", String(250), nullable=False),
    Column("code", String(32), nullable=False),
    Column("issued_at", DateTime, nullable=False),  # UTC, naive
    Column("alerted_event_id", Integer),  # the last foreign write of the Variable already alerted on Slack
    Index("ux_decision_codes_key", "kind", "valuation_date", "version", "run_id", unique=True),
)

# --- Pipeline health: one row per execution of a DAG run -------------------------------------------------------

# A run cleared and run again is a new execution (Airflow's clear_number: 0 the first time): a later success keeps
# the failed execution's row beside its own.
pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("run_id", String(250), primary_key=True),
    Column("clear_number", Integer, primary_key=True, autoincrement=False),
    Column("dag_id", String(250), nullable=False),
    Column("valuation_date", Date),
    Column("state", String(16), nullable=False),
    Column("started_at", DateTime),
    Column("ended_at", DateTime),
    Column("duration_seconds", Float),
    Column("failed_task", String(250)),
)


# --- Migrations: an existing warehouse brought to the tables above, idempotently -----------------------------------

# Until issue 13 the published ``ibnr`` column (and ``ibnr_total``) held ultimate - paid: the unpaid.
_RESERVE_STEP_NAMES = {
    "previous unpaid (IBNR column)": "previous unpaid",
    "this unpaid (IBNR column)": "this unpaid",
}


def _columns(conn, table: str) -> set[str] | None:
    """The table's column names, None when it does not exist."""
    found = inspect(conn)
    return {c["name"] for c in found.get_columns(table)} if found.has_table(table) else None


def _add_column(conn, table: Table, name: str) -> None:
    column = table.c[name]
    conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {name} {column.type.compile(dialect=conn.dialect)}")


def _split_unpaid(conn, table: Table, old: str, unpaid: str, added: tuple[str, ...]) -> list[str]:
    """Rename the old column (it held the unpaid) to ``unpaid`` and add the ``added`` columns, each step once."""
    done = []
    columns = _columns(conn, table.name)
    if unpaid not in columns and old in columns:
        conn.exec_driver_sql(f"ALTER TABLE {table.name} RENAME COLUMN {old} TO {unpaid}")
        done.append(f"{table.name}.{old} renamed {unpaid} (it held ultimate - paid)")
        columns = _columns(conn, table.name)
    for name in added:
        if name not in columns:
            _add_column(conn, table, name)
            done.append(f"{table.name}.{name} added")
    return done


def migrate(engine: Engine) -> list[str]:
    """Bring tables created by an older version to the definitions above; returns the steps done (none: current).

    Issue 13 split the published reserve: the old ``ibnr`` (ultimate - paid) becomes ``unpaid``, and case reserves
    (incurred - paid) and IBNR (ultimate - incurred) are filled from each row's own figures, so published history
    keeps its meaning. Version totals follow; the analysis of change's step names lose "(IBNR column)". The
    selection columns are added; rows published before them were the model's (``method`` 'model'); their versions
    have no ``reserve_ranges`` rows (create_all creates that table).

    Issue 14 binds a decision to its run: the approvals' unique key gains ``run_id``. Issue 15 keeps one champion per
    line of business: the single champion becomes every line's (see :func:`_champion_per_line`), and the approvals'
    key gains the line. Issue 16 keeps the health of every execution of a run: ``pipeline_runs`` is keyed by
    (run_id, clear_number).

    Issue 17 (incremental ingest): ``snapshot_claims`` gains ``net_closures`` (NULL on older partitions: the next
    ingest then takes the full path), ``claim_transactions`` an index on ``recorded_at`` and ``snapshot_claims`` one on
    (valuation_date, basis, report_date), so drift reads only its windows' claims. Issue 16 (segments by
    setting): ``snapshots`` gains ``segment_by`` and the segment columns widen to :data:`SEGMENT_LENGTH`
    (:func:`_segments_by_setting`). Plausibility keeps its monthly aggregates in ``monthly_aggregates`` (a new
    table, which create_all creates; a month end without rows there takes plausibility's full path).

    Each step checks whether it is still needed, so a second run changes nothing and a run interrupted half way
    completes on the next (on SQLite, DDL commits statement by statement). On PostgreSQL it is one transaction.
    """
    done: list[str] = []
    rs, rv = reserve_results, reserve_versions
    with engine.begin() as conn:
        if any(_columns(conn, t.name) is None for t in (rs, reserve_results_staging, rv, reserve_movements)):
            raise LookupError("the reserve tables do not exist: create the schema with create_all, which migrates")
        for table in (reserve_results, reserve_results_staging):
            done += _split_unpaid(conn, table, "ibnr", "unpaid", ("case_reserve", "ibnr", *SELECTION_COLUMNS))
            # rows published before the selection were the model's ultimates
            marked = conn.execute(
                update(table).where(table.c.method.is_(None)).values(method="model", model_ultimate=table.c.ultimate)
            ).rowcount
            if marked:
                done.append(f"{table.name}: {marked} rows marked as the model's (method, model_ultimate)")
            # rows published before the split: case reserves and IBNR from their own paid, incurred and ultimate
            filled = conn.execute(
                update(table)
                .where(
                    table.c.latest_incurred.is_not(None), or_(table.c.case_reserve.is_(None), table.c.ibnr.is_(None))
                )
                .values(
                    case_reserve=func.round(table.c.latest_incurred - table.c.latest_paid, 2),
                    ibnr=func.round(table.c.ultimate - table.c.latest_incurred, 2),
                )
            ).rowcount
            if filled:
                done.append(f"{table.name}: case_reserve and ibnr filled on {filled} rows")
        done += _split_unpaid(conn, rv, "ibnr_total", "unpaid_total", ("case_reserve_total", "ibnr_total"))

        rows_of_version = (rs.c.valuation_date == rv.c.valuation_date) & (rs.c.version == rv.c.version)

        def version_total(column):
            return select(func.round(func.sum(column), 2)).where(rows_of_version).scalar_subquery()

        # only versions whose every row has incurred: a total of partly unknown figures stays unknown (NULL)
        filled = conn.execute(
            update(rv)
            .where(
                or_(rv.c.case_reserve_total.is_(None), rv.c.ibnr_total.is_(None)),
                select(rs.c.version).where(rows_of_version).exists(),
                ~select(rs.c.version).where(rows_of_version, rs.c.ibnr.is_(None)).exists(),
            )
            .values(case_reserve_total=version_total(rs.c.case_reserve), ibnr_total=version_total(rs.c.ibnr))
        ).rowcount
        if filled:
            done.append(f"reserve_versions: case_reserve_total and ibnr_total filled on {filled} versions")
        for old, new in _RESERVE_STEP_NAMES.items():
            renamed = conn.execute(
                update(reserve_movements).where(reserve_movements.c.step == old).values(step=new)
            ).rowcount
            if renamed:
                done.append(f"reserve_movements: {renamed} rows of step {old!r} renamed {new!r}")
        done += _key_approvals_by_line(conn)
        done += _champion_per_line(conn)
        done += _key_runs_by_execution(conn)
        done += _incremental_ingest_columns(conn)
        done += _drift_window_index(conn)
        done += _segments_by_setting(conn)
    return done


def _segments_by_setting(conn) -> list[str]:
    """Segments defined by the setting segment_by: the snapshot records the definition it was cut by, and every
    segment column takes a label of several attributes (PostgreSQL enforces a varchar's length; SQLite does not)."""
    done = []
    if "segment_by" not in (_columns(conn, snapshots.name) or {"segment_by"}):
        _add_column(conn, snapshots, "segment_by")
        done.append("snapshots.segment_by added")
    if conn.dialect.name != "postgresql":
        return done
    found = inspect(conn)
    for tbl in metadata.sorted_tables:
        if "segment" not in tbl.c or not found.has_table(tbl.name):
            continue
        declared = next(c["type"] for c in found.get_columns(tbl.name) if c["name"] == "segment")
        if getattr(declared, "length", None) is not None and declared.length < SEGMENT_LENGTH:
            conn.exec_driver_sql(f"ALTER TABLE {tbl.name} ALTER COLUMN segment TYPE VARCHAR({SEGMENT_LENGTH})")
            done.append(f"{tbl.name}.segment widened to {SEGMENT_LENGTH} characters")
    return done


def _incremental_ingest_columns(conn) -> list[str]:
    """What the monthly ingest reads: the snapshot's net closures and the index on the transactions' recording time."""
    done = []
    if "net_closures" not in (_columns(conn, snapshot_claims.name) or {"net_closures"}):
        _add_column(conn, snapshot_claims, "net_closures")
        done.append("snapshot_claims.net_closures added")
    if claim_transactions.name in inspect(conn).get_table_names():  # a view of the claims system gets no index
        index = next(i for i in claim_transactions.indexes if i.name == "ix_claim_transactions_recorded_at")
        if index.name not in {i["name"] for i in inspect(conn).get_indexes(claim_transactions.name)}:
            index.create(conn)
            done.append("claim_transactions: index on recorded_at created")
    return done


def _drift_window_index(conn) -> list[str]:
    """The index drift reads its windows through: V's claims by report date."""
    index = next(i for i in snapshot_claims.indexes if i.name == "ix_snapshot_claims_report_date")
    if index.name in {i["name"] for i in inspect(conn).get_indexes(snapshot_claims.name)}:
        return []
    index.create(conn)
    return ["snapshot_claims: index on (valuation_date, basis, report_date) created"]


def _key_runs_by_execution(conn) -> list[str]:
    """Re-key ``pipeline_runs`` from run_id to (run_id, clear_number): the table is rebuilt (a primary key cannot be
    altered on SQLite) and its rows kept as first executions (clear_number 0)."""
    columns = _columns(conn, pipeline_runs.name)
    if columns is None or "clear_number" in columns:
        return []
    old = table(pipeline_runs.name, *[column(c.name, c.type) for c in pipeline_runs.columns if c.name in columns])
    kept = [dict(row) for row in conn.execute(select(old)).mappings()]  # typed: SQLite's dates come back as dates
    conn.exec_driver_sql(f"DROP TABLE {pipeline_runs.name}")
    pipeline_runs.create(conn)
    if kept:
        conn.execute(pipeline_runs.insert(), [{**row, "clear_number": 0} for row in kept])
    return [f"pipeline_runs: keyed by (run_id, clear_number); {len(kept)} runs kept as their first execution"]


def _key_approvals_by_line(conn) -> list[str]:
    """The approvals' unique key becomes (V, version, run, line): the rows stay as they are (segment NULL: a decision
    made for every line, before champions per line)."""
    if _columns(conn, approvals.name) is None:
        return []
    done = []
    if "segment" not in _columns(conn, approvals.name):
        _add_column(conn, approvals, "segment")
        done.append("approvals.segment added")
    indexes = {index["name"] for index in inspect(conn).get_indexes(approvals.name)}
    for old in ("ux_approvals_key", "ux_approvals_run"):
        if old in indexes:
            conn.exec_driver_sql(f"DROP INDEX {old}")
            done.append(f"approvals: unique key {old} dropped")
    if "ux_approvals_line" not in indexes:
        next(i for i in approvals.indexes if i.name == "ux_approvals_line").create(conn)
        done.append("approvals: unique key (valuation_date, model_version, run_id, segment) created")
    return done


def _champion_per_line(conn) -> list[str]:
    """From one champion for the book to one per line: the single champion becomes every line's (the lines of the
    triangle cells), its history rows are copied to every line, and the promotion decisions gain the line (an old
    decision was the book's: segment 'ALL')."""
    done = []
    mr, ch, lc, pd_ = model_registry, champion_history, line_champions, promotion_decisions
    if "ux_model_registry_one_champion" in {i["name"] for i in inspect(conn).get_indexes(mr.name)}:
        conn.exec_driver_sql("DROP INDEX ux_model_registry_one_champion")
        done.append("model_registry: the one-champion index dropped (line_champions holds one per line)")
    if "segment" not in _columns(conn, ch.name):
        _add_column(conn, ch, "segment")
        done.append("champion_history.segment added")
    lines = conn.execute(select(triangle_cells.c.segment).distinct().order_by(triangle_cells.c.segment)).scalars()
    lines = list(lines)
    old = conn.execute(select(mr.c.model_version).where(mr.c.status == "champion")).scalars().all()
    if len(old) == 1 and lines and conn.execute(select(func.count()).select_from(lc)).scalar_one() == 0:
        since = conn.execute(select(func.max(ch.c.valuation_date)).where(ch.c.model_version == old[0])).scalar()
        since = since or conn.execute(select(mr.c.trained_valuation_date).where(mr.c.model_version == old[0])).scalar()
        now = conn.execute(select(func.max(ch.c.changed_at))).scalar() or since
        conn.execute(
            lc.insert(),
            [{"segment": s, "model_version": old[0], "valuation_date": since, "changed_at": now} for s in lines],
        )
        done.append(f"line_champions: {old[0]} is the champion of {len(lines)} lines")
    unlined = conn.execute(select(ch).where(ch.c.segment.is_(None)).order_by(ch.c.id)).mappings().all()
    if unlined and lines:
        copies = [{**{k: v for k, v in row.items() if k != "id"}, "segment": s} for row in unlined for s in lines]
        conn.execute(ch.insert(), copies)
        conn.execute(ch.delete().where(ch.c.segment.is_(None)))
        done.append(f"champion_history: {len(unlined)} rows copied to each of {len(lines)} lines")
    if "segment" not in _columns(conn, pd_.name):  # the primary key changes: rebuild the table
        rows = conn.execute(select(*[c for c in pd_.columns if c.name != "segment"])).mappings().all()
        conn.exec_driver_sql(f"DROP TABLE {pd_.name}")
        pd_.create(conn)
        if rows:
            conn.execute(pd_.insert(), [{**row, "segment": "ALL"} for row in rows])
        done.append(f"promotion_decisions: keyed by (valuation_date, segment); {len(rows)} old rows kept as 'ALL'")
    return done


def create_all(engine: Engine) -> list[str]:
    """Create every table that does not exist yet and migrate older ones (idempotent); returns the migration steps
    done."""
    metadata.create_all(engine, checkfirst=True)
    return migrate(engine)


def main(argv: list[str] | None = None) -> None:
    from include.reserving.config import warehouse_url
    from include.reserving.warehouse.core import make_engine, redact

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="SQLAlchemy URL (default: the reserving_db connection or the SQLite file)")
    args = parser.parse_args(argv)
    url = args.db or warehouse_url()
    for step in create_all(make_engine(url)):
        print(f"migrated: {step}")
    print(f"warehouse schema ready: {len(metadata.tables)} tables in {redact(url)}")


if __name__ == "__main__":
    main()
