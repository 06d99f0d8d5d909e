"""The layers hold: SQL only in the warehouse layer and the quality runner; the failure callback imports cheaply."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys

from tests.conftest import PROJECT

PACKAGE = PROJECT / "include" / "reserving"
# Where SQL may be written: the access layer, the quality gate's runner (its views and the check queries it hands
# to Great Expectations run inside the warehouse), and the schema (table definitions).
SQL_ALLOWED = ("warehouse/", "quality/runner.py", "quality/queries.py", "schema.py")
STATEMENT_BUILDERS = {"select", "insert", "update", "delete", "text", "func", "and_", "or_", "case", "cast", "literal"}
SQL_TEXT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|WITH)\b", re.IGNORECASE)


def _sql_in(path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found += [f"imports sqlalchemy.{a.name}" for a in node.names if a.name in STATEMENT_BUILDERS]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = node.func.value
            is_super = isinstance(receiver, ast.Call) and getattr(receiver.func, "id", None) == "super"
            if node.func.attr in ("execute", "exec_driver_sql", "scalar", "scalars") and not is_super:
                found.append(f"calls .{node.func.attr}() on line {node.lineno}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_TEXT.match(node.value):
            found.append(f"SQL text on line {node.lineno}")
    return found


def test_no_sql_outside_the_warehouse_layer_and_the_quality_runner():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(SQL_ALLOWED):
            continue
        if found := _sql_in(path):
            offenders[relative] = found
    assert offenders == {}


def test_the_rule_sees_sql(tmp_path):
    """The scanner itself finds each kind of SQL it is meant to find."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from sqlalchemy import select\nconn.execute(q)\nQ = 'select * from claims'\nOK = 'Selected ultimate'\n"
        "super().execute(context)\n"
    )
    assert _sql_in(probe) == ["imports sqlalchemy.select", "calls .execute() on line 2", "SQL text on line 3"]


def test_the_failure_callback_imports_neither_pandas_nor_chainladder():
    """What a failed task's alert costs to import: the notifier module, without the data stack."""
    probe = "import sys, json, include.reserving.notify; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=PROJECT)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = {name.split(".")[0] for name in json.loads(out.stdout)}
    assert loaded.isdisjoint({"pandas", "chainladder", "xgboost", "great_expectations", "reportlab", "sklearn"})
