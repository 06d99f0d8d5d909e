"""The one PDF helper: wide tables split across pages and column blocks, images, Markdown, identical bytes."""

from __future__ import annotations

import io

from matplotlib.figure import Figure
from pypdf import PdfReader

from include.reserving.presentation import charts, pdf

ORIGINS = [f"O{i:03d}" for i in range(90)]  # more rows than a landscape page holds
AGES = [str(a) for a in range(3, 123, 3)]  # 40 columns: more than fit across


def _wide(path):
    rows = [[o, *[f"{i * 1000 + a:,.2f}" for a in range(len(AGES))]] for i, o in enumerate(ORIGINS)]
    story = [
        pdf.paragraph("Wide <table> & friends", "h1"),
        *pdf.wide_table(["Origin", *AGES], rows, width=pdf.LANDSCAPE.width),
    ]
    return pdf.build(path, story, page=pdf.LANDSCAPE, title="wide", creator=__name__, footer="wide table test")


def _pages(path) -> list[str]:
    return [page.extract_text() for page in PdfReader(str(path)).pages]


def test_a_wide_table_splits_into_column_blocks_and_pages(tmp_path):
    pages = _pages(_wide(tmp_path / "wide.pdf"))
    text = "\n".join(pages)
    parts = [line for line in text.splitlines() if line.startswith("Columns ")]
    assert len(parts) >= 2 and parts[0].startswith("Columns 3 to") and parts[-1].endswith(f"of {len(parts)})")
    assert len(pages) >= 2 * len(parts)  # every block runs over more than one page
    for page in pages:  # the key column and the header repeat on every page of every block
        assert "Origin" in page
    for block_start in ("O000", "O089"):
        assert text.count(block_start) == len(parts)
    assert "Wide <table> & friends" in pages[0]  # plain text, escaped: never markup
    assert all("wide table test" in page and f"Page {n}" in page for n, page in enumerate(pages, 1))


def test_same_story_gives_identical_bytes(tmp_path):
    assert _wide(tmp_path / "a.pdf").read_bytes() == _wide(tmp_path / "b.pdf").read_bytes()


def test_tables_fit_the_page_and_flag_alerts_and_totals():
    wide_rows = [["x" * 80, "1.00"], ["Total", "1.00"]]
    table = pdf.table(["Text", "Number"], wide_rows, width=200, total_row=True, alert_rows=[0])
    assert sum(table._colWidths) <= 200 + 0.01
    assert type(table._cellvalues[1][0]).__name__ == "Paragraph"  # too wide: wraps inside its cell


def test_image_keeps_its_aspect_ratio(tmp_path):
    figure = Figure(figsize=(4, 2))
    figure.add_subplot().plot([0, 1], [0, 1])
    image = pdf.image(charts.to_png(figure), 300)
    assert (image.drawWidth, round(image.drawHeight)) == (300, 150)
    assert charts.to_png(figure) == charts.to_png(figure)


def test_markdown_is_typeset_headings_code_lists_and_tables(tmp_path):
    text = (
        "# Title\n\nA paragraph with `code`, **bold** and <raw html>.\n\n"
        "```\nairflow variables set k '{\"a\": 1}'\n```\n\n"
        "- first item\n- second item\n\n| Name | Value |\n|---|---:|\n| a \\| b | 1,234.50 |\n"
    )
    path = pdf.build(
        tmp_path / "md.pdf",
        pdf.markdown(text, width=pdf.PORTRAIT.width),
        page=pdf.PORTRAIT,
        title="md",
        creator=__name__,
        footer="markdown",
    )
    (page,) = _pages(path)
    for expected in ("Title", "A paragraph with code, bold and <raw html>.", "airflow variables set k '{\"a\": 1}'"):
        assert expected in page, expected
    assert [line[1:] for line in page.splitlines() if "item" in line] == [" first item", " second item"]  # bulleted
    assert "a | b\n1,234.50" in page
    assert PdfReader(io.BytesIO(path.read_bytes())).metadata["/Creator"] == __name__
