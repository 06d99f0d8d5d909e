"""Where the contract's tables and columns live in the claims system: the ``source_mapping`` setting.

The pipeline's SQL names the contract's tables and columns (``docs/DATA_CONTRACT.md``). A claims system names them
its own way, perhaps in another schema or database; the mapping says, per contract table, the source table (and
schema) and the source name of each column whose name differs. Unmapped tables and columns keep the contract's
names, so the empty mapping is the identity.

>>> m = SourceMapping.parse({"claims": {"table": "clm", "schema": "core", "columns": {"claim_id": "clm_no"}}})
>>> m.source_table("claims"), m.source_column("claims", "claim_id"), m.source_column("claims", "region")
('core.clm', 'clm_no', 'region')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from include.reserving import schema
from include.reserving.contract import Breach

CONTRACT_TABLES = {t.name: t for t in schema.SOURCE_TABLES}


class SourceMappingError(ValueError):
    """The ``source_mapping`` setting names something the contract does not have, or is malformed."""

    def __init__(self, why: str):
        super().__init__(f"setting source_mapping: {why}; see docs/CONNECTING_A_CLAIMS_SYSTEM.md")


@dataclass(frozen=True)
class TableMap:
    table: str
    schema: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)  # contract column -> source column


@dataclass(frozen=True)
class SourceMapping:
    tables: Mapping[str, TableMap] = field(default_factory=dict)  # contract table -> where it lives

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> SourceMapping:
        """Validate the setting's JSON: known contract tables and columns, text names, no two columns on one."""
        tables = {}
        for name, spec in (raw or {}).items():
            if name not in CONTRACT_TABLES:
                raise SourceMappingError(f"{name!r} is not a contract table (use one of {sorted(CONTRACT_TABLES)})")
            if not isinstance(spec, Mapping):
                raise SourceMappingError(f"{name}: expected an object with table, schema, columns")
            unknown_keys = sorted(set(spec) - {"table", "schema", "columns"})
            if unknown_keys:
                raise SourceMappingError(f"{name}: unknown keys {unknown_keys} (use table, schema, columns)")
            columns = dict(spec.get("columns") or {})
            known = {c.name for c in CONTRACT_TABLES[name].columns}
            unknown = sorted(set(columns) - known)
            if unknown:
                raise SourceMappingError(f"{name}: {unknown} are not contract columns of {name} ({sorted(known)})")
            texts = [spec.get("table", name), *columns.values()]
            if spec.get("schema") is not None:
                texts.append(spec["schema"])
            if not all(isinstance(v, str) and v for v in texts):
                raise SourceMappingError(f"{name}: table, schema and column names must be non-empty text")
            targets = [columns.get(c, c) for c in known]
            if len(set(targets)) != len(targets):
                raise SourceMappingError(f"{name}: two contract columns map to one source column")
            tables[name] = TableMap(spec.get("table", name), spec.get("schema"), columns)
        return cls(tables)

    @property
    def identity(self) -> bool:
        return all(m.table == n and m.schema is None and self._renames(n) == {} for n, m in self.tables.items())

    def _map(self, name: str) -> TableMap:
        return self.tables.get(name) or TableMap(name)

    def _renames(self, name: str) -> dict[str, str]:
        return {c: s for c, s in self._map(name).columns.items() if c != s}

    def location(self, name: str) -> tuple[str | None, str]:
        """(schema, table) of a contract table in the source."""
        m = self._map(name)
        return m.schema, m.table

    def source_table(self, name: str) -> str:
        schema_name, table_name = self.location(name)
        return f"{schema_name}.{table_name}" if schema_name else table_name

    def source_column(self, name: str, col: str) -> str:
        return self._map(name).columns.get(col, col)

    def contract_columns(self, name: str, source_columns: Iterable[str]) -> list[str]:
        """Source column names as the contract's (a column the mapping does not name keeps its own name)."""
        reverse = {s: c for c, s in self._map(name).columns.items()}
        return [reverse.get(s, s) for s in source_columns]

    def annotate(self, breach: Breach) -> Breach:
        """A contract breach that also names where it is in the source (the operator fixes the source's names)."""
        if breach.table not in CONTRACT_TABLES or self.identity:
            return breach
        table_name = f"{breach.table} (source {self.source_table(breach.table)})"
        col = breach.column
        if col and "," not in col and self.source_column(breach.table, col) != col:
            col = f"{col} (source {self.source_column(breach.table, col)})"
        return replace(breach, table=table_name, column=col)

    def describe(self) -> list[str]:
        """One line per mapped table, for logs and messages."""
        lines = []
        for name in sorted(self.tables):
            renames = ", ".join(f"{c} <- {s}" for c, s in sorted(self._renames(name).items()))
            lines.append(f"{name} <- {self.source_table(name)}" + (f" ({renames})" if renames else ""))
        return lines
