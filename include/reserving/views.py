"""Read queries behind the Reserving view and its JSON API: plain functions over the warehouse, no web framework.

Each function takes an engine (and the artifact root where files are involved) and returns JSON-ready values:
dates as ISO strings, money as floats, missing values as None.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from include.reserving import artifacts, governance
from include.reserving.dates import previous_month_end
from include.reserving.presentation.formatting import as_date, money_total, origin_labels
from include.reserving.presentation.instruction import ApprovalInstruction
from include.reserving.publish import total
from include.reserving.quality import data_docs
from include.reserving.warehouse import decisions, registry, reserves, runs
from include.reserving.warehouse.cells import origin_months

CARD_FORMATS = ("md", "pdf")
# the money columns of published rows totalled by line and over all lines
AMOUNTS = ("latest_paid", "latest_incurred", "case_reserve", "ultimate", "ibnr", "unpaid")


class NotFound(LookupError):
    """Nothing matches the request (nothing published, no such decision, no such file)."""


class BadRequest(ValueError):
    """The request names something that cannot exist (a model version id with path characters, a NUL byte)."""


# What the registry's version ids are made of (date-method-hash): nothing that could steer a path.
MODEL_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")


def _plain(value: Any) -> Any:
    """A JSON-ready scalar: dates as ISO strings, NaN as None, numpy scalars as Python ones."""
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy / pandas scalars
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _records(frame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def published_reserves(engine: Engine, valuation_date: dt.date | None = None) -> dict[str, Any]:
    """The current published version for V (default: the latest V): version metadata, rows, totals by line and
    over all lines.

    Every row, line and total carries case reserves (incurred - paid), IBNR (ultimate - incurred) and unpaid
    (ultimate - paid = case reserves + IBNR) to the cent; a total of case reserves or IBNR is None when an incurred
    is unknown. ``std_err``, ``p75`` and ``p95`` are of the unpaid. Each row names the ``method`` that set its
    ultimate and carries every method's ultimate and the diagnostic ``flags``; ``origin`` is the origin's label as
    the report prints it (``2023Q1``), ``origin_start`` its first day; ``ranges`` holds the selection rule
    and the range of the unpaid per line and in total (empty for versions published before the methods);
    ``movements`` the analysis of change the publishing run stored, line by line in step order (empty if none).
    """
    latest = reserves.latest_valuation_date(engine)
    if latest is None:
        raise NotFound("no reserves have been published yet")
    valuation_date = valuation_date or latest
    version = reserves.current_version(engine, valuation_date)
    if version is None:
        raise NotFound(f"no reserves are published for valuation date {valuation_date} (latest published: {latest})")
    rows = reserves.current_reserves(engine, valuation_date)
    # the origin named as in the PDF report (2023Q1 by the snapshot's origin grain); its first day as origin_start
    labels = origin_labels(rows["origin"], origin_months(engine, valuation_date, version["basis"]))
    rows.insert(rows.columns.get_loc("origin") + 1, "origin_start", rows["origin"].map(as_date))
    rows["origin"] = rows["origin_start"].map(labels)
    # each line names the model that reserved it (its champion's refit, or the fallback) and the approval behind it
    lines = [
        {
            "segment": segment,
            "model_version": group["model_version"].iloc[0],
            "approval_ref": _plain(group["approval_ref"].iloc[0]),
            **{c: total(group[c]) for c in AMOUNTS},
        }
        for segment, group in rows.groupby("segment", sort=True)
    ]
    meta = {k: _plain(v) for k, v in version.items() if k != "is_current"}
    movements = reserves.movements(engine, valuation_date, version["run_id"])
    return {
        **meta,
        "rows": _records(rows.drop(columns=["valuation_date", "version", "model_version", "approval_ref"])),
        "lines": lines,
        "totals": {c: total(rows[c]) for c in AMOUNTS},
        "ranges": _records(
            reserves.ranges_of(engine, valuation_date, version["version"]).drop(columns=["valuation_date", "version"])
        ),
        "movements": _records(movements.drop(columns=["valuation_date", "run_id"])),
    }


def publication_history(engine: Engine) -> list[dict[str, Any]]:
    """Every published version, newest valuation date first and, within one, newest version first: current ones,
    the versions they replaced and held ones (the view's picker and history)."""
    frame = reserves.versions(engine).sort_values(["valuation_date", "version"], ascending=False)
    keep = ["valuation_date", "version", "basis", "status", "is_current", "unpaid_total", "published_at", "run_id"]
    return _records(frame[keep])


def movement_table(movements: list[dict[str, Any]], valuation_date: dt.date) -> dict[str, Any]:
    """The analysis of change laid out as the report prints it: one row per step, one column per line and a total
    (none on the ratio row), the opening named by V-1's date; the notes with the lines they concern. Empty lists when
    nothing was analysed."""
    before = previous_month_end(valuation_date).isoformat()  # the analysis runs from V-1's publication
    lines = sorted({m["segment"] for m in movements})
    steps, notes = [], {}
    for order in sorted({m["step_order"] for m in movements}):
        at = {m["segment"]: m for m in movements if m["step_order"] == order}
        first = next(iter(at.values()))
        ratio_row = first["kind"] == "memo" and all(m["amount"] is None for m in at.values())
        values = [(at.get(line) or {}).get("ratio" if ratio_row else "amount") for line in lines]
        known = [v for v in values if v is not None]
        total = None if ratio_row or not known else money_total(known)
        label = f"unpaid at {before}" if first["kind"] == "opening" else first["step"]
        steps.append({"step": label, "kind": first["kind"], "ratio": ratio_row, "values": values, "total": total})
        for line, m in at.items():
            if m["note"]:
                notes.setdefault(m["note"].replace("V-1", before), []).append(line)
    return {"lines": lines, "steps": steps, "notes": [{"note": n, "lines": ls} for n, ls in notes.items()]}


def champion(engine: Engine) -> dict[str, Any]:
    """Each line's champion (an empty list before any approval) and every champion change, oldest first."""
    current = [
        {
            "segment": segment,
            "model_version": entry.model_version,
            "method": entry.method,
            "spec": entry.spec,
            "trained_valuation_date": entry.trained_valuation_date.isoformat(),
            "basis": entry.basis,
            "code_version": entry.code_version,
        }  # no artifact_uri: the model_version identifies it, and the server's storage stays private
        for segment, entry in registry.champions(engine).items()
    ]
    return {"champions": current, "history": _records(registry.champion_history(engine))}


def pending_approvals(engine: Engine) -> list[dict[str, Any]]:
    """Model cards waiting for a decision: per (V, run), the lines sent to approval with their challengers, and the
    exact Variable key and values (one Variable decides every line of the card; ``lines`` may decide them apart)."""
    cards: dict[tuple, list[dict]] = {}
    for row in registry.pending_decisions(engine):
        cards.setdefault((row["valuation_date"], row["run_id"]), []).append(row)
    pending = []
    for (valuation_date, run_id), rows in cards.items():
        promote = {
            r.segment: r.challenger_version
            for r in registry.decisions_at(engine, valuation_date)
            if r.decision == "promote" and r.run_id == run_id
        }
        proposal = governance.proposal_id(valuation_date, promote)
        issued = decisions.issued(engine, decisions.MODEL, valuation_date, proposal)
        code = issued.code if issued else None  # not on the card yet: the instruction shows a placeholder
        asked = tuple(sorted(promote))
        instruction = ApprovalInstruction(valuation_date, proposal, code, asked)
        pending.append(
            {
                "valuation_date": _plain(valuation_date),
                "run_id": run_id,
                "challenger_version": proposal,
                "lines": [{k: _plain(v) for k, v in row.items()} for row in rows],
                "approval_code": code,
                "variable_key": instruction.key,
                "approve_value": instruction.approve_value,
                "reject_value": instruction.reject_value,
                "instruction": instruction.text,
            }
        )
    return pending


def pipeline_health(engine: Engine, limit: int = 24) -> list[dict[str, Any]]:
    """The latest executions of pipeline runs, newest first; a failed execution stays beside the later success of
    the same run (the table may be empty)."""
    return [{k: _plain(v) for k, v in row.items()} for row in runs.latest_runs(engine, limit)]


def model_card_path(engine: Engine, artifact_root: str, valuation_date: dt.date, model_version: str, fmt: str) -> Path:
    """The local file of the model card of the challenger decided at V, checked to lie under the artifact root.

    The run folder comes from the recorded promotion decision, never from the request; the resolved path must still
    be inside the root (no traversal through odd version ids or symlinks).
    """
    if fmt not in CARD_FORMATS:
        raise NotFound(f"model cards are served as {' or '.join(CARD_FORMATS)}, not {fmt!r}")
    if not MODEL_VERSION.fullmatch(model_version) or ".." in model_version:
        raise BadRequest(f"{model_version!r} is not a model version id (letters, digits, '-', '_', '.')")
    if not artifacts.is_local(artifact_root):
        raise NotFound("the artifact root is remote: open the model card there")
    decision = _card_decision(engine, valuation_date, model_version)
    if decision is None:
        raise NotFound(f"no promotion decision for model {model_version!r} at valuation date {valuation_date}")
    if not decision.run_id:  # the card lives in its run's folder
        raise NotFound(f"the promotion decision at {valuation_date} names no run: its model card cannot be found")
    root = Path(artifact_root.removeprefix("file://")).resolve()
    folder = artifacts.run_dir(str(root), valuation_date, decision.run_id)
    path = Path(folder, f"{artifacts.model_card_stem(model_version)}.{fmt}").resolve()
    if not path.is_relative_to(root):
        raise NotFound(f"model card of {model_version!r} is outside the artifact root")
    if not path.is_file():
        raise NotFound(f"model card of {model_version!r} for {valuation_date} has not been written ({path.name})")
    return path


def _data_docs_dir(artifact_root: str, valuation_date: dt.date, run_id: str) -> tuple[Path, Path]:
    """The artifact root and a gate run's Data Docs folder, both resolved; the folder must lie under the root."""
    if not data_docs.is_run_id(run_id):
        raise BadRequest(f"{run_id!r} is not an Airflow run id (letters, digits, '_.~:+-')")
    if not artifacts.is_local(artifact_root):
        raise NotFound("the artifact root is remote: open the Data Docs there")
    root = Path(artifact_root.removeprefix("file://")).resolve()
    docs = Path(artifacts.run_dir(str(root), valuation_date, run_id), *data_docs.DOCS_FOLDER).resolve()
    if not docs.is_relative_to(root) or not docs.is_dir():
        raise NotFound(f"no Data Docs for run {run_id!r} at valuation date {valuation_date}")
    return root, docs


def data_docs_pages(artifact_root: str, valuation_date: dt.date, run_id: str) -> list[data_docs.Page]:
    """The pages of a gate run's Data Docs (validations with their outcome, expectation suites)."""
    _, docs = _data_docs_dir(artifact_root, valuation_date, run_id)
    return data_docs.pages(docs, docs.parent.parent.joinpath(*data_docs.RESULTS_FILE))


def data_docs_file(artifact_root: str, valuation_date: dt.date, run_id: str, page: str) -> Path:
    """A file of a gate run's Data Docs, checked to lie inside that run's Data Docs folder (no traversal through
    ``..``, odd characters or symlinks) and to be of a kind GX writes there."""
    if "\x00" in page:
        raise BadRequest("a Data Docs page name cannot contain a NUL byte")
    if Path(page).suffix.lower() not in data_docs.SERVED:
        raise NotFound(f"Data Docs serve {', '.join(sorted(data_docs.SERVED))} files, not {Path(page).name!r}")
    _, docs = _data_docs_dir(artifact_root, valuation_date, run_id)
    path = (docs / page).resolve()
    if not path.is_relative_to(docs):
        raise NotFound("that page is outside the run's Data Docs")
    if not path.is_file():
        raise NotFound(f"the run's Data Docs have no page {page!r}")
    return path


def has_data_docs(artifact_root: str, valuation_date: dt.date | str | None, run_id: str) -> bool:
    """Whether the view can serve Data Docs for this run (a health row links them then)."""
    if valuation_date is None:
        return False
    try:
        _data_docs_dir(artifact_root, as_date(valuation_date), run_id)
    except (NotFound, BadRequest):
        return False
    return True


def _card_decision(engine: Engine, valuation_date: dt.date, model_version: str):
    """A promotion decision of V on a card named ``model_version`` (the challenger, or the proposal of several)."""
    rows = registry.decisions_at(engine, valuation_date)
    promote = {r.segment: r.challenger_version for r in rows if r.decision == "promote"}
    if governance.proposal_id(valuation_date, promote) == model_version:
        return next(r for r in rows if r.decision == "promote")
    return next((r for r in rows if r.challenger_version == model_version), None)
