"""The one PDF helper (reportlab platypus), shared by the reserve report and the model card: page layouts, styles,
paragraphs, tables that paginate, wide tables cut into column blocks, images, Markdown typeset as flowables, and the
document builder.

:func:`build` writes in reportlab's invariant mode (fixed creation date and document id) with binary image streams,
so the same story always gives byte-identical PDFs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reportlab import rl_config
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import CondPageBreak, Flowable, Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle


@dataclass(frozen=True)
class Page:
    """A page size and its (equal) margins."""

    size: tuple[float, float]
    margin: float

    @property
    def width(self) -> float:
        """Width of the text column."""
        return self.size[0] - 2 * self.margin


LANDSCAPE = Page(landscape(A4), 1.5 * cm)
PORTRAIT = Page(A4, 2 * cm)
AUTHOR = "Reserving pipeline"

FONT = "Helvetica"
FONT_BOLD = "Helvetica-Bold"
TABLE_FONT_SIZE = 8
WIDE_FONT_SIZE = 7  # triangles and factor rows: many columns
CELL_PADDING = 8  # left + right padding of a table cell, in points
MAX_TEXT_COLUMN = 230  # wider text wraps inside its cell
MIN_ROWS = 2  # fewest body rows a table leaves on a page when it runs over

HEADER_BG = colors.HexColor("#1f4e79")
ZEBRA = colors.HexColor("#f2f5f9")
TOTAL_BG = colors.HexColor("#dde6f0")
ALERT_BG = colors.HexColor("#f8d7da")
ALERT_TEXT = colors.HexColor("#9c0006")
GRID = colors.HexColor("#b0b7c3")

_BASE = getSampleStyleSheet()
STYLES = {
    "title": ParagraphStyle("Title", parent=_BASE["Title"], fontSize=24, leading=30, alignment=TA_LEFT),
    "h1": ParagraphStyle("H1", parent=_BASE["Heading1"], fontSize=16, leading=20, spaceBefore=6, spaceAfter=6),
    "h2": ParagraphStyle("H2", parent=_BASE["Heading2"], fontSize=12, leading=15, spaceBefore=8, spaceAfter=4),
    "body": ParagraphStyle("Body", parent=_BASE["BodyText"], fontSize=9, leading=12),
    "note": ParagraphStyle("Note", parent=_BASE["BodyText"], fontSize=7.5, leading=9.5, textColor=colors.grey),
    "cell": ParagraphStyle("Cell", fontName=FONT, fontSize=TABLE_FONT_SIZE, leading=TABLE_FONT_SIZE + 2),
    "code": ParagraphStyle(
        "Code",
        parent=_BASE["BodyText"],
        fontName="Courier",
        fontSize=8,
        leading=10,
        backColor=colors.HexColor("#f2f2f2"),
        borderPadding=3,
        spaceBefore=2,
        spaceAfter=6,
    ),
}


def escape(text: str) -> str:
    """Plain text made safe for reportlab's paragraph markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def paragraph(text: str, style: str = "body") -> Paragraph:
    """A paragraph of plain text (escaped here: data never turns into markup)."""
    return Paragraph(escape(text), STYLES[style])


def _column_widths(rows: list[list], font_size: float, bold_rows: set[int], fit: float | None) -> list[float]:
    widths = []
    for j in range(len(rows[0])):
        widest = 0.0
        for i, row in enumerate(rows):
            font = FONT_BOLD if i in bold_rows else FONT
            widest = max(widest, stringWidth(str(row[j]), font, font_size))
        widths.append(min(widest + CELL_PADDING, MAX_TEXT_COLUMN))
    total = sum(widths)
    if fit is not None and total > fit:
        widths = [w * fit / total for w in widths]
    return widths


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: float,
    text_columns: int = 1,
    total_row: bool = False,
    alert_rows: Sequence[int] = (),
    font_size: float = TABLE_FONT_SIZE,
    widths: list[float] | None = None,
) -> Table:
    """A table at most ``width`` wide that paginates cleanly: the header repeats on every page, splits fall between
    rows and leave at least ``MIN_ROWS`` rows on each page, and text wider than its column wraps inside its cell.

    The first ``text_columns`` columns are left-aligned text, the rest right-aligned numbers. ``alert_rows`` (indices
    into ``rows``) are shaded red, the last row is bold when ``total_row``.
    """
    data = [list(header), *(list(row) for row in rows)]
    bold = {0} | ({len(data) - 1} if total_row and rows else set())
    widths = widths or _column_widths(data, font_size, bold, fit=width)
    cell_style = ParagraphStyle("c", parent=STYLES["cell"], fontSize=font_size, leading=font_size + 2)
    for i, row in enumerate(data):
        for j, value in enumerate(row):
            font = FONT_BOLD if i in bold else FONT
            if isinstance(value, str) and stringWidth(value, font, font_size) + CELL_PADDING > widths[j] + 0.01:
                row[j] = Paragraph(escape(value) if i else f"<b>{escape(value)}</b>", cell_style)
    style = [
        ("FONT", (0, 0), (-1, -1), FONT, font_size),
        ("FONT", (0, 0), (-1, 0), FONT_BOLD, font_size),
        ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
        ("BACKGROUND", (0, 0), (-1, 0), HEADER_BG),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, ZEBRA]),
        ("GRID", (0, 0), (-1, -1), 0.25, GRID),
        ("ALIGN", (text_columns, 0), (-1, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("LEFTPADDING", (0, 0), (-1, -1), CELL_PADDING / 2),
        ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PADDING / 2),
    ]
    if total_row and rows:
        style += [("FONT", (0, -1), (-1, -1), FONT_BOLD, font_size), ("BACKGROUND", (0, -1), (-1, -1), TOTAL_BG)]
    for i in alert_rows:
        style += [("BACKGROUND", (0, i + 1), (-1, i + 1), ALERT_BG), ("TEXTCOLOR", (0, i + 1), (-1, i + 1), ALERT_TEXT)]
    # a page break inside the table leaves at least MIN_ROWS body rows on each side (no orphan row, no lone total)
    split_range = (1 + MIN_ROWS, -MIN_ROWS)
    return Table(
        data,
        colWidths=widths,
        repeatRows=1,
        splitByRow=1,
        rowSplitRange=split_range,
        hAlign="LEFT",
        style=TableStyle(style),
    )


def wide_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: float,
    key_columns: int = 1,
    font_size: float = WIDE_FONT_SIZE,
) -> list[Flowable]:
    """A table too wide for ``width``, cut into column blocks that each repeat the key columns (e.g. the origin).

    Each block is a :func:`table`, so its rows still run over as many pages as they need.
    """
    widths = _column_widths([list(header), *rows], font_size, {0}, fit=None)
    key_width = sum(widths[:key_columns])
    blocks: list[list[int]] = []
    current: list[int] = []
    used = key_width
    for j in range(key_columns, len(header)):
        if current and used + widths[j] > width:
            blocks.append(current)
            current, used = [], key_width
        current.append(j)
        used += widths[j]
    if current or not blocks:
        blocks.append(current)
    out: list[Flowable] = []
    for n, block in enumerate(blocks):
        keep = list(range(key_columns)) + block
        if len(blocks) > 1:
            first, last = header[block[0]], header[block[-1]]
            out.append(paragraph(f"Columns {first} to {last} (part {n + 1} of {len(blocks)})", "note"))
        # Rows with nothing in this block (a triangle's young origins at high ages) are left out of it.
        block_rows = [[row[j] for j in keep] for row in rows if any(row[j] != "" for j in block)]
        out.append(
            table(
                [header[j] for j in keep],
                block_rows,
                width=width,
                text_columns=key_columns,
                font_size=font_size,
                widths=[widths[j] for j in keep],
            )
        )
        out.append(Spacer(1, 6))
    return out


def image(png: bytes, width: float) -> Image:
    """A PNG scaled to ``width``, aspect ratio kept."""
    picture = Image(io.BytesIO(png))
    scale = width / picture.imageWidth
    picture.drawWidth, picture.drawHeight = width, picture.imageHeight * scale
    picture.hAlign = "LEFT"
    return picture


# --- Markdown ------------------------------------------------------------------------------------------------------


def _inline(token) -> str:
    """Paragraph markup of a Markdown inline token: emphasis and code kept, everything else as escaped text."""
    tags = {"strong_open": "<b>", "strong_close": "</b>", "em_open": "<i>", "em_close": "</i>", "softbreak": " "}
    tags |= {"hardbreak": "<br/>", "code_inline": '<font face="Courier">{}</font>'}
    out = []
    for child in token.children or []:
        tag = tags.get(child.type)
        if tag is None:
            out.append(escape(child.content))  # text, raw HTML (shown, never interpreted), link text
        else:
            out.append(tag.format(escape(child.content)) if "{}" in tag else tag)
    return "".join(out)


def markdown(text: str, *, width: float) -> list[Flowable]:
    """Markdown (headings, paragraphs, fenced code, bullet lists, pipe tables) as flowables at most ``width`` wide.

    A table's columns are left-aligned up to its first right-aligned one (``---:``), as :func:`table` lays them out.
    """
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    out: list[Flowable] = []
    style, bullet, rows, text_columns = "body", False, [], None
    for i, token in enumerate(tokens):
        kind = token.type
        if kind == "heading_open":
            style = "h1" if token.tag == "h1" else "h2"
            out.append(CondPageBreak(3 * cm))  # a heading never ends a page
        elif kind == "paragraph_open":
            style = "body"
        elif kind == "bullet_list_open":
            bullet = True
        elif kind == "bullet_list_close":
            bullet = False
        elif kind in ("fence", "code_block"):
            out.append(Paragraph(escape(token.content.rstrip("\n")).replace("\n", "<br/>"), STYLES["code"]))
        elif kind == "tr_open":
            rows.append([])
        elif kind in ("th_open", "td_open"):
            if "right" in str(token.attrGet("style")) and text_columns is None:
                text_columns = len(rows[-1])
            rows[-1].append("".join(child.content for child in tokens[i + 1].children or []))
        elif kind == "table_close":
            header, *body = rows
            numbers_from = len(header) if text_columns is None else text_columns
            out += [table(header, body, width=width, text_columns=numbers_from), Spacer(1, 6)]
            rows, text_columns = [], None
        elif kind == "inline" and not rows:
            markup = _inline(token)
            out.append(Paragraph(f"&bull; {markup}" if bullet else markup, STYLES[style]))
    return out


# --- document ------------------------------------------------------------------------------------------------------


def build(
    path: str | Path, story: list[Flowable], *, page: Page, title: str, creator: str, footer: str, subject: str = ""
) -> Path:
    """Write ``story`` to the PDF ``path`` with ``footer`` and the page number at the foot of every page.

    The same story always gives the same bytes: no wall-clock value enters the document.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = SimpleDocTemplate(
        str(path),
        pagesize=page.size,
        leftMargin=page.margin,
        rightMargin=page.margin,
        topMargin=page.margin,
        bottomMargin=page.margin,
        title=title,
        author=AUTHOR,
        subject=subject,
        creator=creator,
        invariant=1,
    )

    def foot(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont(FONT, 7)
        canvas.setFillColor(colors.grey)
        canvas.drawString(page.margin, page.margin / 2, footer)
        canvas.drawRightString(page.size[0] - page.margin, page.margin / 2, f"Page {doc.page}")
        canvas.restoreState()

    saved = rl_config.useA85
    rl_config.useA85 = 0  # binary image streams: ASCII85 in pure Python costs more than the rest of the layout
    try:
        doc.build(story, onFirstPage=foot, onLaterPages=foot)
    finally:
        rl_config.useA85 = saved
    return path
