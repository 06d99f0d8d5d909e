"""The one Jinja2 environment over ``templates/`` (package data) and :func:`render`.

HTML templates are autoescaped: a segment or model version can never inject markup into the page or an e-mail.
Markdown and text templates are not HTML; they escape what Markdown would read as markup with the ``md`` filter.
The formatters of :mod:`formatting` are filters, so every template prints numbers as the PDF does.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from include.reserving.presentation import formatting

_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>|])")


def markdown_text(value: Any) -> str:
    """Plain text made safe inside Markdown prose and table cells (``|``, ``<`` and emphasis marks escaped)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(value))


ENV = Environment(
    loader=PackageLoader("include.reserving.presentation", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,  # a missing context value is a bug, not an empty string
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
ENV.filters.update(
    md=markdown_text,
    money=formatting.money,
    money_total=formatting.money_total,
    number=formatting.number,
    signed=formatting.signed,
    count=formatting.count,
    pvalue=formatting.pvalue,
    duration=formatting.duration,
    day=formatting.day,
)
ENV.globals["NA"] = formatting.NA


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context``."""
    return ENV.get_template(template).render(**context)
