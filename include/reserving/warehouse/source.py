"""Reads of the source tables for the data contract: what exists (SQLAlchemy inspector) and which values break it.

The statements name columns without types (``sqlalchemy.column``), so a text in a date column comes back as the
text it is instead of failing in a result processor: the contract check must never die of the data it judges.
One aggregate pass per table counts every value-level breach; a failing rule then reads up to five examples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, column, extract, func, inspect, literal, not_, or_, select, table
from sqlalchemy.engine import Engine
from sqlalchemy.exc import NoSuchTableError
from sqlalchemy.sql import FromClause
from sqlalchemy.sql.elements import ColumnElement

from include.reserving import contract as c
from include.reserving.sourcemap import CONTRACT_TABLES, SourceMapping
from include.reserving.warehouse.core import is_postgres, read_frame

IDENTITY = SourceMapping()


def mapped_table(mapping: SourceMapping, name: str, columns: Iterable[str], typed: bool = False) -> FromClause:
    """A contract table as the claims system holds it, seen by the contract's names: a subquery named like the
    contract table whose columns carry the contract's names. ``typed``: with the schema's types (values parsed by
    SQLAlchemy, for copying checked data), else untyped (the contract check must see values as they are stored)."""
    contract_table = CONTRACT_TABLES[name]
    wanted = {c: mapping.source_column(name, c) for c in columns}

    def col(contract_name: str, source_name: str):
        return column(source_name, contract_table.c[contract_name].type) if typed else column(source_name)

    schema_name, table_name = mapping.location(name)
    src = table(table_name, *[col(c, s) for c, s in wanted.items()], schema=schema_name)
    if table_name == name and schema_name is None and all(c == s for c, s in wanted.items()):
        return src  # the identity: the table itself, as plain SQL as before
    return select(*[src.c[s].label(c) for c, s in wanted.items()]).subquery(name)


def describe(engine: Engine, mapping: SourceMapping = IDENTITY) -> dict[str, dict[str, c.Family | None] | None]:
    """Per contract table: its columns (by the contract's names) and their declared type family, or None when the
    table (or view) is absent. ``mapping``: where each table lives in the source and what its columns are called."""
    insp = inspect(engine)
    found: dict[str, dict[str, c.Family | None] | None] = {}
    present: dict[str | None, set[str]] = {}
    for t in c.TABLES:
        schema_name, table_name = mapping.location(t.name)
        if schema_name not in present:
            try:
                present[schema_name] = set(insp.get_table_names(schema=schema_name)) | set(
                    insp.get_view_names(schema=schema_name)
                )
            except NoSuchTableError:
                present[schema_name] = set()
        if table_name not in present[schema_name]:
            found[t.name] = None
            continue
        columns = insp.get_columns(table_name, schema=schema_name)
        names = mapping.contract_columns(t.name, [col["name"] for col in columns])
        found[t.name] = {name: c.family_of(col["type"]) for name, col in zip(names, columns, strict=True)}
    return found


TIMESTAMP_FORM = "[0-9][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]*"


@dataclass(frozen=True)
class _Probe:
    """A value-level rule on one column: the condition a breaching row meets."""

    rule: str
    column: str | None
    expected: str
    found: str
    condition: ColumnElement


def _sqlite_form(col, family: c.Family) -> ColumnElement | None:
    """SQLite keeps any value in any column: the values that are not of the column's family."""
    kind = func.typeof(col)
    if family == c.Family.TEXT:
        return kind.notin_(["text", "null"])
    if family == c.Family.INTEGER:
        return kind.notin_(["integer", "null"])
    if family in (c.Family.NUMERIC, c.Family.FLOAT):
        return kind.notin_(["integer", "real", "null"])
    # SQLAlchemy writes dates as YYYY-MM-DD text and compares them as text: anything else compares wrongly. A
    # '+0 days' modifier makes SQLite normalise a day that does not exist (2024-02-30), so it no longer matches.
    if family == c.Family.DATE:
        return and_(col.isnot(None), or_(kind != "text", func.coalesce(func.date(col, "+0 days"), "") != col))
    if family == c.Family.TIMESTAMP:  # compared as text against 'YYYY-MM-DD HH:MM:SS': the date must lead
        # (a pattern, not datetime(): on the largest table it costs a third as much)
        return and_(col.isnot(None), or_(kind != "text", col.op("NOT GLOB")(TIMESTAMP_FORM)))
    return None


def _probes(
    contract: c.TableContract, readable: dict[str, c.Family | None], sqlite: bool, segment_by: Iterable[str] = ()
) -> list[_Probe]:
    probes = []
    for name, declared in readable.items():
        spec = contract.column(name)
        col = column(name)
        form_ok = None
        # a column declared as text has SQLite's text affinity: whatever is written comes back as text
        if sqlite and not (spec.family == declared == c.Family.TEXT):
            bad_form = _sqlite_form(col, spec.family)
            if bad_form is not None:
                probes.append(_Probe("values", name, c.VALUE_FORM[spec.family], "values that are not", bad_form))
                form_ok = not_(bad_form)
        if not spec.nullable:
            probes.append(_Probe("not_null", name, "no NULL values", "NULL values", col.is_(None)))
        elif contract.name == "claims" and name in segment_by:  # a claim without it is in no segment
            probes.append(_Probe("segment_attribute", name, c.SEGMENT_EXPECTED, "NULL values", col.is_(None)))
        if spec.is_amount:
            numeric = func.typeof(col).in_(["integer", "real"]) if sqlite else col.isnot(None)
            probes.append(
                _Probe(
                    "range",
                    name,
                    "amounts that fit numeric(18,2)",
                    "amounts of 10^16 or more in absolute value (or not finite)",
                    and_(numeric, func.abs(col) >= literal(c.AMOUNT_LIMIT)),
                )
            )
        if name in c.FIRST_OF_MONTH.get(contract.name, ()):
            day = extract("day", col)
            condition = and_(col.isnot(None), day != 1) if form_ok is None else and_(form_ok, day != 1)
            probes.append(_Probe("first_of_month", name, "the first day of a month", "other days", condition))
    return probes


def _examples(engine: Engine, source, columns: Iterable[str], condition: ColumnElement) -> tuple[Any, ...]:
    statement = select(*[column(n) for n in dict.fromkeys(columns)]).select_from(source).where(condition)
    frame = read_frame(engine, statement.limit(c.EXAMPLE_COUNT))
    return c.examples(frame.astype(object).where(frame.notna(), None).to_dict("records"))


def value_breaches(
    engine: Engine,
    readable: dict[str, dict[str, c.Family | None]],
    mapping: SourceMapping = IDENTITY,
    segment_by: Iterable[str] = (),
) -> list[c.Breach]:
    """Value-level breaches (form on SQLite, NULLs, amount range, first of month) of the readable columns; the
    claims' ``segment_by`` attributes (the setting) must have a value on every claim."""
    sqlite = not is_postgres(engine)
    breaches = []
    for contract in c.TABLES:
        if contract.name not in readable:
            continue
        columns = list(readable[contract.name])
        probes = _probes(contract, readable[contract.name], sqlite, tuple(segment_by))
        if not probes:
            continue
        source = mapped_table(mapping, contract.name, columns)
        counts = read_frame(
            engine,
            select(
                *[
                    func.coalesce(func.sum(case((p.condition, 1), else_=0)), 0).label(f"p{i}")
                    for i, p in enumerate(probes)
                ]
            ).select_from(source),
        ).iloc[0]
        labels = [n for n in contract.labels if n in columns]
        for i, probe in enumerate(probes):
            count = int(counts[f"p{i}"])
            if count:
                # a row whose label is the breach is shown whole: its other columns are what identifies it
                shown_columns = columns if probe.column in labels else [*labels, probe.column]
                shown = _examples(engine, source, shown_columns, probe.condition)
                breaches.append(
                    c.Breach(
                        probe.rule, contract.name, probe.column, probe.expected, f"{count} {probe.found}", count, shown
                    )
                )
    return breaches


def key_breaches(
    engine: Engine,
    readable: dict[str, dict[str, c.Family | None]],
    clean: set[tuple[str, str]],
    mapping: SourceMapping = IDENTITY,
) -> list[c.Breach]:
    """Duplicate keys, and claims with more than one accident date or line of business.

    ``clean``: (table, column) pairs with no value breach; a key is grouped only over such columns, so a text in a
    date column cannot make the grouping itself fail.
    """
    breaches = []
    for contract in c.TABLES:
        key = contract.unique_key
        if not key or contract.name not in readable or not all((contract.name, k) in clean for k in key):
            continue
        source = mapped_table(mapping, contract.name, readable[contract.name])
        key_cols = [column(k) for k in key]
        per_claim = [n for n in c.ONE_PER_CLAIM if contract.name == "claims" and (contract.name, n) in clean]
        groups = (
            select(
                *key_cols,
                func.count().label("rows"),
                *[func.count(func.distinct(column(n))).label(f"n_{n}") for n in per_claim],
            )
            .select_from(source)
            .where(*[k.isnot(None) for k in key_cols])
            .group_by(*key_cols)
            .having(func.count() > 1)
            .subquery("groups")
        )
        totals = read_frame(
            engine,
            select(
                func.count().label("keys"),
                *[func.coalesce(func.sum(case((groups.c[f"n_{n}"] > 1, 1), else_=0)), 0).label(n) for n in per_claim],
            ).select_from(groups),
        ).iloc[0]
        shown_key = ", ".join(key)
        if int(totals["keys"]):
            rows = read_frame(
                engine,
                select(*[groups.c[k] for k in key], groups.c.rows)
                .order_by(*[groups.c[k] for k in key])
                .limit(c.EXAMPLE_COUNT),
            )
            breaches.append(
                c.Breach(
                    "unique",
                    contract.name,
                    shown_key,
                    f"({shown_key}) unique",
                    f"{int(totals['keys'])} duplicated key(s)",
                    int(totals["keys"]),
                    c.examples(rows.to_dict("records")),
                )
            )
        for name in per_claim:
            count = int(totals[name])
            if not count:
                continue
            many = groups.c[f"n_{name}"] > 1
            ids = read_frame(engine, select(groups.c.claim_id).where(many).order_by(groups.c.claim_id).limit(5))
            rows = read_frame(
                engine,
                select(column("claim_id"), column(name))
                .select_from(source)
                .where(column("claim_id").in_(list(ids["claim_id"])))
                .order_by(column("claim_id"), column(name)),
            )
            breaches.append(
                c.Breach(
                    "one_per_claim",
                    contract.name,
                    name,
                    f"one {name} per claim",
                    f"{count} claim(s) with more than one",
                    count,
                    c.examples([{"claim_id": k, name: list(g[name])} for k, g in rows.groupby("claim_id", sort=True)]),
                )
            )
    return breaches
