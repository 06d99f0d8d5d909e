"""Writing one benchmark's section of BENCHMARKS.md, keeping every other section as it is."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(heading: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the section under ``heading`` (a ``## ...`` line) with ``body``, or append it."""
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    section = f"{heading}\n\n{body.strip()}\n\n"
    updated = (
        pattern.sub(lambda _: section, current) if pattern.search(current) else current.rstrip() + "\n\n" + section
    )
    path.write_text(updated.rstrip() + "\n")
