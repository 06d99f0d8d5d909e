"""The reserve report PDF: read back with pypdf, the numbers equal the published rows to the cent."""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from include.reserving.presentation.report import ReportData, render_reserve_report
from tests.conftest import PROJECT
from tests.include.conftest import (
    CASE_BY_LINE,
    IBNR_BY_LINE,
    RULE,
    TOTAL_CASE,
    TOTAL_IBNR,
    TOTAL_STD_ERR,
    TOTAL_UNPAID,
    UNPAID_BY_LINE,
    make_report_data,
)

ARTIFACTS = PROJECT / "test-artifacts"
PNG_DPI = 80  # pdftoppm's resolution for the rendered pages


def _pages(path) -> list[str]:
    return [page.extract_text() for page in PdfReader(str(path)).pages]


def pages_of(data: ReportData, path) -> list[str]:
    return _pages(render_reserve_report(data, path))


@pytest.fixture(scope="module")
def pages(report_pdf) -> list[str]:
    return _pages(report_pdf)


def _cents(values) -> Decimal:
    return sum((Decimal(f"{v:.2f}") for v in values), Decimal("0"))


def test_fixture_golden_numbers(report_data):
    """The golden strings are the hand-set book's sums, added up in exact decimal arithmetic; each line ties."""
    reserves = report_data.reserves
    assert f"{_cents(reserves['unpaid']):,.2f}" == TOTAL_UNPAID
    assert f"{_cents(reserves['case_reserve']):,.2f}" == TOTAL_CASE and f"{_cents(reserves['ibnr']):,.2f}" == TOTAL_IBNR
    for segment, rows in reserves.groupby("segment"):
        unpaid, case, ibnr = (_cents(rows[c]) for c in ("unpaid", "case_reserve", "ibnr"))
        assert (f"{unpaid:,.2f}", f"{case:,.2f}", f"{ibnr:,.2f}") == (
            UNPAID_BY_LINE[segment],
            CASE_BY_LINE[segment],
            IBNR_BY_LINE[segment],
        )
        assert unpaid == case + ibnr
    assert reserves["segment"].nunique() >= 3 and reserves["origin"].nunique() >= 10


def test_cover_names_valuation_champion_status_and_version(pages, report_data):
    cover = pages[0]
    assert "Valuation date" in cover and "2023-12-31" in cover
    assert report_data.champion_version in cover
    assert "APPROVED" in cover
    assert "Publication version" in cover
    assert f"Total case reserves\n{TOTAL_CASE}\nTotal IBNR\n{TOTAL_IBNR}\nTotal unpaid\n{TOTAL_UNPAID}" in cover
    assert "IBNR = ultimate - incurred" in cover.replace("\n", " ")
    assert "7. Pipeline health" in cover  # the contents still fit on the cover


def test_summary_has_case_ibnr_unpaid_per_line_total_and_movement(pages, report_data):
    summary = pages[1]
    assert "Summary by line: case reserves, IBNR and unpaid" in summary
    for segment in UNPAID_BY_LINE:
        line = summary[summary.index(f"\n{segment}\n") :].split("\n")
        # Line, paid, incurred, case reserves, ultimate, IBNR, unpaid
        assert (line[4], line[6], line[7]) == (CASE_BY_LINE[segment], IBNR_BY_LINE[segment], UNPAID_BY_LINE[segment])
    total = summary[summary.index("\nTotal\n") :].split("\n")
    assert (total[4], total[6], total[7]) == (TOTAL_CASE, TOTAL_IBNR, TOTAL_UNPAID)
    assert "unpaid = ultimate - paid = case reserves + IBNR" in summary.replace("\n", " ")
    previous = report_data.previous_reserves
    motor_now = _cents(report_data.reserves.loc[report_data.reserves["segment"] == "Motor", "unpaid"])
    motor_before = _cents(previous.loc[previous["segment"] == "Motor", "unpaid"])
    assert f"{motor_before:,.2f}" in summary
    assert f"{motor_now - motor_before:,.2f}" in summary


def test_every_origin_case_ibnr_unpaid_and_range_of_a_line_appears_to_the_cent(pages, report_data):
    text = "\n".join(pages)
    motor = report_data.reserves[report_data.reserves["segment"] == "Motor"]
    assert len(motor) == 12
    columns = ("latest_paid", "latest_incurred", "case_reserve", "ultimate", "ibnr", "unpaid", "std_err")
    for _, row in motor.iterrows():
        label = f"{row['origin'].year}Q{(row['origin'].month - 1) // 3 + 1}"
        expected = [f"{row[c]:,.2f}" for c in columns]
        assert "\n".join([label, *expected]) in text, (label, expected)
        assert f"{row['p75']:,.2f}\n{row['p95']:,.2f}" in text
    assert "4,812,345.67" in text and "5,802,450.16" in text  # first and last hand-set Motor ultimates
    motor_total = "\n".join(["Total", *[f"{_cents(motor[c]):,.2f}" for c in columns[:-1]]])
    assert motor_total in text and f"\n{CASE_BY_LINE['Motor']}\n" in motor_total + "\n"


def test_sections_triangles_factors_backtest_quality_drift_health(pages):
    text = "\n".join(pages)
    for heading in (
        "Cumulative paid triangle",
        "Cumulative incurred triangle",
        "Paid link ratios: averages, indicated and selected factors",
        "Actual versus expected",
        "Champion versus challenger backtest",
        "Data quality",
        "6. Drift",
        "Pipeline health",
    ):
        assert heading in text, heading
    assert "36-ult\n" in text and "1.2658" in text  # Liability's tail factor
    assert "1.7333" in text  # Motor 3-6: 0.52 / 0.30
    assert "8 of 8 checks passed: " in text
    assert "1 of 5 features breached their threshold." in text and "BREACH" in text
    assert "10 of 12 runs succeeded (83.3%)." in text
    assert "quality_gate" in text


def test_analysis_of_change_page_ties_each_line_to_the_cent(pages, report_data):
    page = next(p for p in pages if "1b. Analysis of change by line\nFrom" in p)
    reserves, previous = report_data.reserves, report_data.previous_reserves
    for segment in ("Liability", "Motor", "Property"):
        before = _cents(previous.loc[previous["segment"] == segment, "unpaid"])
        now = _cents(reserves.loc[reserves["segment"] == segment, "unpaid"])
        assert f"{before:,.2f}" in page and f"{now:,.2f}" in page and f"{now - before:,.2f}" in page
    other = page[page.index("\nexperience and other\n") + 1 :].split("\n")
    # Line order Liability, Motor, Property, then the total: previous + other = this, to the cent
    total_before, total_now = _cents(previous["unpaid"]), _cents(reserves["unpaid"])
    assert other[4] == f"{total_now - total_before:,.2f}"
    assert f"{total_before:,.2f}" in page and TOTAL_UNPAID in page
    expected = page[page.index("\nmemo: expected emergence\n") + 1 :].split("\n")
    origins = report_data.reserves.groupby("segment")["origin"].nunique()
    assert expected[1:5] == [*[f"{1_000 * n:,.2f}" for n in origins], f"{1_000 * origins.sum():,.2f}"]
    ratio = page[page.index("\nmemo: actual / expected emergence\n") + 1 :].split("\n")
    assert ratio[1:4] == ["0.00", "0.00", "0.00"]


def test_paid_triangle_cells_are_the_cells_to_the_cent(pages, report_data):
    text = "\n".join(pages)
    cells = report_data.cells
    oldest = cells[(cells["segment"] == "Property") & (cells["origin"] == cells["origin"].min())]
    row = "\n".join(["2021Q1", *[f"{v:,.2f}" for v in oldest.sort_values("development")["paid"]]])
    assert row in text


def test_same_data_gives_identical_bytes(report_pdf, tmp_path):
    again = render_reserve_report(make_report_data(), tmp_path / "again.pdf")
    assert again.read_bytes() == Path(report_pdf).read_bytes()


def test_large_book_paginates_with_repeated_headers(tmp_path):
    """40 quarterly origins: tables run over pages; every page of the per-origin table repeats its header."""
    pdf = render_reserve_report(make_report_data(n_origins=40), tmp_path / "large.pdf")
    pages = _pages(pdf)
    assert len(pages) > 20
    origin_pages = [p for p in pages if "2014Q1" in p]
    assert len(origin_pages) >= 6  # per line: the origin table and two triangles start with the oldest origin
    for page in pages:
        if "2015Q3" in page:  # an origin row on the page: a header naming the origin column sits above it
            assert "Origin" in page


def test_missing_previous_and_empty_sections_still_render(tmp_path, report_data):
    data = ReportData(
        valuation_date=report_data.valuation_date,
        status="preliminary",
        champion_version=report_data.champion_version,
        publication_version=1,
        reserves=report_data.reserves,
        cells=report_data.cells,
        factors=report_data.factors,
    )
    text = "\n".join(_pages(render_reserve_report(data, tmp_path / "bare.pdf")))
    assert "PRELIMINARY" in text
    assert "No previous valuation was supplied" in text
    assert "No backtest this month" in text
    assert "No data-quality results were supplied." in text and "No check failed and none was skipped." in text
    assert "No month-level plausibility checks were supplied." in text
    assert TOTAL_UNPAID in text and TOTAL_CASE in text and TOTAL_IBNR in text


def test_invalid_status_and_empty_reserves_are_refused(report_data):
    with pytest.raises(ValueError, match="status"):
        ReportData(**{**report_data.__dict__, "status": "final"})
    with pytest.raises(ValueError, match="no published reserves"):
        ReportData(**{**report_data.__dict__, "reserves": report_data.reserves.iloc[0:0]})


def _page_png(pdf, number: int, name: str) -> Path:
    """Page ``number`` of ``pdf`` rendered by pdftoppm to test-artifacts/``name``.png (skips without poppler)."""
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed: cannot render the PDF to PNG")
    ARTIFACTS.mkdir(exist_ok=True)
    prefix = ARTIFACTS / name
    pages = ["-f", str(number), "-l", str(number)]
    subprocess.run(
        ["pdftoppm", "-png", "-r", str(PNG_DPI), *pages, "-singlefile", str(pdf), str(prefix)], check=True, timeout=60
    )
    png = prefix.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return png


def test_first_page_renders_to_png(report_pdf):
    assert 0.01 < _dark_share(_page_png(report_pdf, 1, "reserve_report_page1")) < 0.5


def test_a_young_line_and_the_plausibility_summary_are_noted(tmp_path, report_data):
    """A line whose cells are all at one age says how it was reserved; the quality page sums up plausibility."""
    import dataclasses
    import datetime as dt

    import pandas as pd

    origin = dt.date(2023, 10, 1)
    young_cells = pd.DataFrame(
        [{"segment": "Marine", "origin": origin, "development": 3, "paid": 100.0, "incurred": 150.0}]
    )
    young_reserve = report_data.reserves.iloc[[0]].assign(
        segment="Marine", origin=origin, latest_paid=100.0, latest_incurred=150.0, ultimate=250.0, ibnr=150.0
    )
    plausibility = pd.DataFrame(
        {
            "segment": ["ALL", "Motor", "Marine"],
            "check": ["extract_stalled", "paid", "paid"],
            "passed": [True, True, None],
        }
    )
    data = dataclasses.replace(
        report_data,
        cells=pd.concat([report_data.cells, young_cells], ignore_index=True),
        reserves=pd.concat([report_data.reserves, young_reserve], ignore_index=True),
        plausibility=plausibility,
    )
    text = " ".join(" ".join(_pages(render_reserve_report(data, tmp_path / "young.pdf"))).split())
    assert "Marine is too young for development factors of its own" in text
    assert "Liability is too young" not in text
    assert "Month-level plausibility: 2 of 3 checks passed; 1 skipped (Marine)." in text


def _label(origin) -> str:
    return f"{origin.year}Q{(origin.month - 1) // 3 + 1}"


def test_each_line_has_a_methods_page_with_every_method_the_selected_one_and_the_rule(pages, report_data):
    names = {"paid_cl": "paid CL", "bf": "BF"}
    methods = ("paid_cl_ultimate", "incurred_cl_ultimate", "bf_ultimate", "cape_cod_ultimate", "model_ultimate")
    for segment, rows in report_data.reserves.groupby("segment"):
        (page,) = [p for p in pages if f"2. {segment}: methods and selection" in p]
        assert f"Selection rule: {RULE}." in " ".join(page.split())
        for row in rows.to_dict("records"):
            # origin, paid CL, incurred CL, BF, Cape Cod, model, selected, its method (flags after it)
            cells = [_label(row["origin"]), *[f"{row[c]:,.2f}" for c in methods], f"{row['ultimate']:,.2f}"]
            assert "\n".join([*cells, names[row["method"]]]) in page, cells
        selected = f"{_cents(rows['ultimate']):,.2f}"
        assert "\n".join(["Total", *[f"{_cents(rows[c]):,.2f}" for c in methods], selected]) in page
    # the flags name the method whose ultimate is below incurred (Motor's oldest origins: BF and the model)
    motor = next(p for p in pages if "2. Motor: methods and selection" in p)
    assert "bf: ultimate<incurred; model: ultimate<incurred" in " ".join(motor.split())


def test_ranges_by_line_and_total_to_the_cent(pages, report_data):
    (page,) = [p for p in pages if "1c. Ranges of the unpaid by line and in total" in p]
    for row in report_data.ranges.to_dict("records"):
        cv = f"{100 * row['cv']:.1f}%"
        values = [f"{row[c]:,.2f}" for c in ("unpaid", "std_err")] + [cv] + [f"{row[c]:,.2f}" for c in ("p75", "p95")]
        assert "\n".join([row["segment"], *values]) in page, values
    assert f"Total\n{TOTAL_UNPAID}\n{TOTAL_STD_ERR}\n" in page
    assert "independent" in page


def test_no_cv_is_printed_where_the_unpaid_is_near_zero(tmp_path, report_data):
    import dataclasses

    reserves = report_data.reserves.copy()
    oldest = (reserves["segment"] == "Property") & (reserves["origin"] == reserves["origin"].min())
    # unpaid 0.01 with a std. error of 50.00: a CV of 500,000% says nothing
    reserves.loc[oldest, ["ultimate", "unpaid", "std_err"]] = [
        reserves.loc[oldest, "latest_paid"].iloc[0] + 0.01,
        0.01,
        50.0,
    ]
    data = dataclasses.replace(report_data, reserves=reserves)
    text = "\n".join(_pages(render_reserve_report(data, tmp_path / "near_zero.pdf")))
    row = reserves[oldest].iloc[0]
    assert f"{_label(row['origin'])}\n{row['latest_paid']:,.2f}" in text
    assert "\n0.01\n50.00\nn/a\n" in text and "500000.0%" not in text.replace(",", "")


def _dark_share(png: Path) -> float:
    """The share of the page's pixels that are dark (ink: text, rules, chart marks) in the PNG; asserts the PNG is
    the page at pdftoppm's resolution."""
    from PIL import Image

    from include.reserving.presentation.report import PAGE

    with Image.open(png) as image:
        expected = [round(points / 72 * PNG_DPI) for points in PAGE.size]
        assert all(abs(got - want) <= 1 for got, want in zip(image.size, expected, strict=True)), image.size
        grey = image.convert("L")
        return sum(grey.histogram()[:128]) / (grey.width * grey.height)


@pytest.mark.parametrize(
    ("heading", "name"),
    [
        ("2. Liability: methods and selection", "reserve_report_methods"),
        ("Paid link ratios: averages, indicated and selected factors", "reserve_report_link_ratios"),
        ("Claim counts, severity and frequency by origin", "reserve_report_claim_counts"),
        ("1c. Ranges of the unpaid by line and in total", "reserve_report_ranges"),
        ("5. Data quality and reconciliation\n", "reserve_report_data_quality"),
        ("Appendix A. Every data check\nA.1", "reserve_report_appendix"),
    ],
)
def test_exhibit_pages_render_to_png_with_content(report_pdf, pages, heading, name):
    number = next(i for i, p in enumerate(pages, 1) if heading in p)
    share = _dark_share(_page_png(report_pdf, number, name))
    # a page of tables holds 2-6% ink; a page with only its heading and footer 0.3%, a black page (a broken
    # render) most of it
    assert 0.01 < share < 0.5, share


def test_summary_shows_earned_premium_and_ultimate_loss_ratio_by_line_and_in_total(pages):
    summary = " ".join(pages[1].split())
    # selected ultimate / earned premium: Liability 46,074,071.03 / (12 x 5,000,000.00) = 76.79%; Motor
    # 63,382,685.50 / 90,000,000.00 = 70.43%; Property 29,436,276.41 / 43,200,000.00 = 68.14%; the total
    # 138,893,032.94 / 193,200,000.00 = 71.89%
    assert "Earned premium Ultimate LR" in summary
    assert "5.3% 60,000,000.00 76.8% Motor" in summary
    assert "3.1% 90,000,000.00 70.4% Property" in summary
    assert "-3.8% 43,200,000.00 68.1% Total" in summary
    assert "3.8% 193,200,000.00 71.9%" in summary


def test_each_origin_shows_earned_premium_and_ultimate_loss_ratio(pages):
    text = "\n".join(pages)
    # Motor 2021Q1: 4,812,345.67 / 7,500,000.00 = 64.16%; Liability 2023Q4: 4,234,567.89 / 5,000,000.00 = 84.69%
    assert "4,812,345.67\n" in text and "\n7,500,000.00\n64.2%\n" in text
    liability = next(p for p in pages if "2. Liability\n" in p)
    assert "4,816,899.74\n5,000,000.00\n84.7%\n" in liability  # after the 2023Q4 P95
    assert "\n60,000,000.00\n76.8%" in liability  # the line's total


def test_loss_ratio_is_na_where_premium_is_missing_or_zero(tmp_path, report_data):
    import dataclasses
    import datetime as dt
    import math

    cells = report_data.cells.copy()
    property_ = cells["segment"] == "Property"
    cells.loc[property_ & (cells["origin"] == dt.date(2023, 10, 1)), "earned_premium"] = 0.0
    cells.loc[property_ & (cells["origin"] == dt.date(2023, 7, 1)), "earned_premium"] = math.nan
    data = dataclasses.replace(report_data, cells=cells)
    pages = _pages(render_reserve_report(data, tmp_path / "no_premium.pdf"))
    summary = " ".join(pages[1].split())
    # Property without 2023Q3 (2,789,012.34) and 2023Q4 (2,845,678.95): 23,801,585.12 / 36,000,000.00 = 66.12%;
    # the total 133,258,341.65 / 186,000,000.00 = 71.64%
    assert "-3.8% 36,000,000.00 66.1% Total" in summary and "186,000,000.00 71.6%" in summary
    property_page = next(p for p in pages if "2. Property\n" in p)
    q3 = property_page.split("\n2023Q3\n")[1].split("\n2023Q4\n")[0]
    q4 = property_page.split("\n2023Q4\n")[1].split("\nTotal\n")[0]
    assert q3.endswith("\nn/a\nn/a") and q4.endswith("\n0.00\nn/a")  # premium unknown; premium 0


def test_claim_counts_severity_and_frequency_per_origin_and_line(pages):
    motor = next(p for p in pages if "2. Motor\n" in p)
    assert "Claim counts, severity and frequency by origin" in motor
    header = "Origin\nReported\nClosed\nOpen\nLatest incurred\nSeverity\nExposure\nFrequency"
    assert header in motor
    # Motor 2023Q4 at 3 months: reported 400 x 0.62 = 248, closed 400 x 0.30 = 120, open 128; incurred
    # 5,802,450.16 x 0.62 = 3,597,519.10, severity 3,597,519.10 / 248 = 14,506.13, frequency 248 / 10,000 = 0.0248
    assert "2023Q4\n248\n120\n128\n3,597,519.10\n14,506.13\n10,000.00\n0.0248" in motor
    # the line: 4,471 reported (248 + 320 + 356 + 376 + 386 + 392 + 396 + 398 + 399 + 400 + 400 + 400) and 3,906
    # closed; severity 58,708,588.51 / 4,471 = 13,130.97; frequency 4,471 / 120,000 = 0.0373
    assert "Total\n4,471\n3,906\n565\n58,708,588.51\n13,130.97\n120,000.00\n0.0373" in motor
    property_ = next(p for p in pages if "2. Property\n" in p)
    # Property 2022Q4 at 15 months: 120 x 0.995 = 119 reported, 120 x 0.94 = 113 closed; 2,566,789.01 x 0.995
    # = 2,553,955.06 incurred, severity 21,461.81; frequency 119 / 2,400 = 0.0496
    assert "2022Q4\n119\n113\n6\n2,553,955.06\n21,461.81\n2,400.00\n0.0496" in property_


def test_claim_counts_without_exposure_or_counts(tmp_path, report_data):
    import dataclasses

    cells = report_data.cells.assign(exposure=float("nan"))
    cells.loc[cells["segment"] == "Property", ["reported_count", "closed_count"]] = float("nan")
    pages = _pages(render_reserve_report(dataclasses.replace(report_data, cells=cells), tmp_path / "counts.pdf"))
    motor = next(p for p in pages if "2. Motor\n" in p)
    assert "2023Q4\n248\n120\n128\n3,597,519.10\n14,506.13\nn/a\nn/a" in motor
    assert "No claim counts were supplied for this line." in next(p for p in pages if "2. Property\n" in p)


def test_the_previous_valuation_is_named_in_the_summary_and_the_analysis_of_change(pages, report_data):
    assert report_data.previous_valuation_date.isoformat() == "2023-11-30"
    summary = " ".join(pages[1].split())
    assert "Unpaid Unpaid at 2023-11-30 Movement Movement %" in summary  # the header
    assert "Movement = unpaid now less unpaid at 2023-11-30" in summary
    assert "previous" not in summary.lower().replace("previous model", "")
    aoc = " ".join(next(p for p in pages if "1b. Analysis of change by line\nFrom" in p).split())
    assert "From the unpaid (case reserves + IBNR) of the current publication at 2023-11-30" in aoc
    assert "unpaid at 2023-11-30 24,672,647.73" in aoc and "same model version as at 2023-11-30" in aoc
    assert "V-1" not in aoc


def test_without_a_previous_valuation_date_the_header_says_previous_unpaid(tmp_path, report_data):
    import dataclasses

    data = dataclasses.replace(report_data, previous_valuation_date=None)
    summary = " ".join(_pages(render_reserve_report(data, tmp_path / "unnamed.pdf"))[1].split())
    assert "Previous unpaid Movement" in summary and "unpaid at the previous valuation" in summary


def _exhibit(pages, segment: str) -> str:
    """The paid link-ratio exhibit of a line: from its heading to the note under it."""
    text = "\n".join(pages)
    start = text.index("Paid link ratios", text.index(f"2. {segment}: methods and selection"))
    return text[start : text.index("Link ratio = cumulative paid", start)]


def test_link_ratio_exhibit_has_each_origins_factors_the_averages_and_the_selected(pages, tmp_path, report_data):
    import dataclasses

    exhibit = _exhibit(pages, "Liability")
    header = "Origin\n3-6\n6-9\n9-12\n12-15\n15-18\n18-21\n21-24\n24-27\n27-30\n30-33\n33-36\n36-ult\n"
    assert header in exhibit
    # Liability 2023Q2 (ultimate 4,098,765.43): paid 204,938.27 at 3 months (5%), 491,851.85 at 6 (12%), 819,753.09
    # at 9 (20%): 491,851.85 / 204,938.27 = 2.4000, 819,753.09 / 491,851.85 = 1.6667; 2023Q3 only 3-6
    assert "\n2023Q2\n2.4000\n1.6667\n2023Q3\n2.4000\nSimple average\n2.4000\n1.6667\n1.4000\n" in exhibit
    # the selected tail 36-ult 1.2658 has no link ratio to set it against; the CDF at 36 months is the tail itself
    assert "\nSelected\n2.4000\n1.6667\n" in exhibit and "1.0533\n1.2658\nSelected - indicated\n" in exhibit
    assert exhibit.endswith("1.3333\n1.2658\n")  # CDF 33-ult = 1.0533 x 1.2658

    # Motor 2021Q1 paid at 3 months halved (1,443,703.70 -> 721,851.85): its 3-6 ratio 2,502,419.75 / 721,851.85 =
    # 3.4667; the other ten origins 0.52 / 0.30 = 1.7333. Simple (10 x 1.7333 + 3.4667) / 11 = 1.8909; volume
    # 29,941,722.37 / (17,274,070.60 - 721,851.85) = 1.8089 (the sums of paid at 6 and 3 months over 2021Q1-2023Q3);
    # the latest three (2023Q1-Q3) 1.7333; selected (the model's, unchanged) 1.7333 - 1.8089 = -0.0756
    cells = report_data.cells.copy()
    first = (cells["segment"] == "Motor") & (cells["origin"] == cells["origin"].min()) & (cells["development"] == 3)
    assert cells.loc[first, "paid"].tolist() == [1_443_703.70]
    cells.loc[first, "paid"] = 721_851.85
    motor = _exhibit(pages_of(dataclasses.replace(report_data, cells=cells), tmp_path / "m.pdf"), "Motor")
    assert "\n2021Q1\n3.4667\n1.2692\n" in motor and "\n2021Q2\n1.7333\n1.2692\n" in motor
    assert "\nSimple average\n1.8909\n1.2692\n" in motor
    assert "\nVolume-weighted (indicated)\n1.8089\n1.2692\n" in motor
    assert "\nSimple average, latest 3\n1.7333\n1.2692\n" in motor
    assert "\nSelected\n1.7333\n1.2692\n" in motor and "\nSelected - indicated\n-0.0756\n+0.0000\n" in motor


def test_origins_are_named_by_the_given_grain(tmp_path):
    """With the snapshot's grain given, the report names origins by it (here months: 2023-10 for 2023Q4's start)."""
    import dataclasses

    data = make_report_data(n_origins=4)
    quarterly = "\n".join(pages_of(data, tmp_path / "q.pdf"))
    monthly = "\n".join(pages_of(dataclasses.replace(data, origin_months=1), tmp_path / "m.pdf"))
    assert "\n2023Q4\n" in quarterly and "\n2023-10\n" not in quarterly
    assert "\n2023-10\n" in monthly and "2023Q" not in monthly


@pytest.mark.parametrize("n_origins", [14, 24])  # both left single rows (a lone total among them) before
def test_no_table_leaves_a_single_row_on_a_page(tmp_path, n_origins):
    """Where a table runs over a page, each part holds its header and at least two rows."""
    from reportlab.platypus import SimpleDocTemplate, Table

    from include.reserving.presentation.report import PAGE, build_story

    def tables(flowables):  # the tables of the story, those kept together with a heading included
        for f in flowables:
            yield from [f] if isinstance(f, Table) else tables(getattr(f, "_content", []))

    story = build_story(make_report_data(n_origins=n_origins))
    originals = {id(f) for f in tables(story)}
    parts: list[int] = []  # body rows of each part of a split table, as drawn

    class Doc(SimpleDocTemplate):
        def afterFlowable(self, flowable):
            if isinstance(flowable, Table) and flowable.repeatRows and id(flowable) not in originals:
                parts.append(len(flowable._cellvalues) - 1)

    margins = {f"{side}Margin": PAGE.margin for side in ("left", "right", "top", "bottom")}
    Doc(str(tmp_path / "parts.pdf"), pagesize=PAGE.size, **margins).build(story)
    assert parts and min(parts) >= 2, sorted(parts)


DATA_CHECKS = "5. Data quality and reconciliation\n"
SECTION_END = "Appendix A lists every check with its result."


def _data_checks_section(pages) -> str:
    """Section 5, from its heading to its closing note; asserts it sits on one page and section 6 follows by the
    next page."""
    number = next(i for i, p in enumerate(pages) if DATA_CHECKS in p)
    page = pages[number]
    section = page[page.index(DATA_CHECKS) :].split("\n6. Drift\n")[0]
    assert SECTION_END in " ".join(section.split()), "the section runs over its page"
    drift = next(i for i, p in enumerate(pages) if i >= number and "\n6. Drift\n" in p)
    assert drift <= number + 1
    return section


def _appendix_text(pages) -> str:
    """Appendix A, from its heading to the end of the report, after every numbered section."""
    number = next(i for i, p in enumerate(pages) if "Appendix A. Every data check\nA.1" in p)
    assert number > next(i for i, p in enumerate(pages) if "\n7. Pipeline health\n" in p)
    text = "\n".join(pages[number:])
    return text[text.index("Appendix A. Every data check\nA.1") :]


def _results(text: str) -> Counter:
    return Counter(line for line in text.split("\n") if line in ("PASS", "FAIL", "SKIPPED"))


def test_data_quality_summary_is_one_page_with_the_gate_counts_and_warnings(pages, report_data):
    section = _data_checks_section(pages)
    assert "PASS" not in section.split("\n")  # the passed checks are counted, not listed
    text = " ".join(section.split())
    assert (
        "The quality gate passed: 8 of 8 checks passed: column values to be between (2), column values to be in set, "
        "column values to not be null (2), compound columns to be unique, table columns to match set, table row count "
        "to be between." in text
    )
    assert "Month-level plausibility: 6 of 7 checks passed; 1 skipped (Property)." in text
    assert (
        "Reconciliation to finance control totals: 6 of 6 line measures within tolerance: case reserve movement (3), "
        "paid (3)." in text
    )
    # the one warning: Property's new-claims check, skipped; nothing else is a row of the table
    assert (
        "Kind Check Line or column Result Detail Plausibility new_claims Property WARNING (skipped) observed 41.00, "
        "no band; skipped: 4 months of history, fewer than 6 Failures:" in text
    )


def _failing(report_data) -> ReportData:
    """The fixture with two failed expectations, a failed and a skipped plausibility check, two measures outside
    tolerance (one line missing from the extract)."""
    import dataclasses

    quality = report_data.quality.copy()
    quality.loc[[2, 5], ["success", "unexpected_count"]] = [[False, 17], [False, 3]]  # paid_amount, claim_type
    plausibility = report_data.plausibility.copy()
    motor = (plausibility["segment"] == "Motor") & (plausibility["check"] == "transactions")
    plausibility.loc[motor, ["observed", "passed", "detail"]] = [9_120.0, False, "rows outside the band"]
    reconciliation = report_data.reconciliation.copy()
    paid = (reconciliation["segment"] == "Motor") & (reconciliation["measure"] == "paid")
    reconciliation.loc[paid, ["control_value", "difference", "passed"]] = [1_261_334.12, -10_000.00, False]
    case = (reconciliation["segment"] == "Property") & (reconciliation["measure"] == "case_reserve_movement")
    reconciliation.loc[case, ["extract_value", "difference", "tolerance", "passed", "note"]] = [
        None,
        None,
        None,
        False,
        "line Property is missing from the extract",
    ]
    return dataclasses.replace(report_data, quality=quality, plausibility=plausibility, reconciliation=reconciliation)


def test_data_quality_summary_lists_every_failure_and_warning_on_one_page(tmp_path, report_data):
    pages = pages_of(_failing(report_data), tmp_path / "failing.pdf")
    section = _data_checks_section(pages)
    lines = section.split("\n")
    assert "PASS" not in lines
    # six rows: two failed expectations, two plausibility warnings, two reconciliation failures
    assert lines.count("FAIL") == 4 and lines.count("WARNING (failed)") == 1 and lines.count("WARNING (skipped)") == 1
    text = " ".join(section.split())
    assert "The quality gate FAILED: 6 of 8 checks passed: column values to be between (2), column values to" in text
    assert "Month-level plausibility: 5 of 7 checks passed; 1 failed (Motor); 1 skipped (Property)." in text
    assert "Reconciliation to finance control totals: 4 of 6 line measures within tolerance: case reserve " in text
    for row in (
        "Quality expect_column_values_to_not_be_null paid_amount FAIL 17 unexpected rows",
        "Quality expect_column_values_to_be_in_set claim_type FAIL 3 unexpected rows",
        "Plausibility transactions Motor WARNING (failed) observed 9,120.00, band [3,100.00, 4,800.00]; rows outside "
        "the band",
        "Reconciliation paid Motor FAIL extract 1,251,334.12, control 1,261,334.12, difference -10,000.00, tolerance "
        "100.00",
        "Reconciliation case reserve movement Property FAIL extract n/a, control 20,115.30, difference n/a, tolerance "
        "n/a; line Property is missing from the extract",
    ):
        assert row in text, row
    appendix = _appendix_text(pages)
    assert _results(appendix) == Counter(PASS=8 - 2 + 7 - 2 + 6 - 2, FAIL=2 + 1 + 2, SKIPPED=1)
    assert "Motor\ntransactions\n9,120.00\n3,100.00\n4,800.00\nFAIL\nrows outside the band" in appendix


def test_appendix_lists_every_check_with_its_observed_value_and_band(pages, report_data):
    appendix = _appendix_text(pages)
    quality, plausibility, reconciliation = report_data.quality, report_data.plausibility, report_data.reconciliation
    assert _results(appendix) == Counter(
        PASS=len(quality) + int(plausibility["passed"].eq(True).sum()) + len(reconciliation),
        SKIPPED=int(plausibility["passed"].isna().sum()),
    )
    assert sum(line.startswith("expect_") for line in appendix.split("\n")) == len(quality)
    for row in quality.to_dict("records"):
        cells = [
            row["expectation"],
            *([row["column"]] if isinstance(row["column"], str) else []),
            "PASS",
            f"{row['unexpected_count']:,}",
        ]
        assert "\n".join(cells) in appendix, cells
    for row in plausibility.to_dict("records"):
        band = ["none" if math.isnan(row[c]) else f"{row[c]:,.2f}" for c in ("lower", "upper")]
        result = "PASS" if row["passed"] else "SKIPPED"
        cells = [row["segment"], row["check"], f"{row['observed']:,.2f}", *band, result, row["detail"]]
        assert "\n".join(cells) in appendix, cells
    for row in reconciliation.to_dict("records"):
        values = [f"{row[c]:,.2f}" for c in ("extract_value", "control_value", "difference", "tolerance")]
        cells = [row["segment"], row["measure"].replace("_", " "), *values, "PASS"]
        assert "\n".join(cells) in appendix, cells


def test_without_control_totals_the_summary_and_the_appendix_say_so(tmp_path, report_data):
    import dataclasses

    import pandas as pd

    note = pd.DataFrame(
        [("ALL", "control_totals", None, None, None, None, True, "not available")],
        columns=report_data.reconciliation.columns,
    )
    pages = pages_of(dataclasses.replace(report_data, reconciliation=note), tmp_path / "no_control.pdf")
    said = "Reconciliation: control totals were not provided for December 2023: the month's extract was not reconciled"
    assert said in " ".join(_data_checks_section(pages).split())
    assert said in " ".join(_appendix_text(pages).split())


def test_build_story_logs_each_section_in_order(caplog):
    from include.reserving.presentation import report

    with caplog.at_level(logging.INFO, logger=report.__name__):
        report.build_story(make_report_data(n_origins=4))
    names = ["cover", "summary", "analysis of change", "ranges", "line Liability", "line Motor", "line Property"]
    names += ["actual vs expected", "backtest", "data checks", "drift", "health", "appendix"]
    assert [r.getMessage() for r in caplog.records if r.name == report.__name__] == [
        f"report: section {name} ({k} of 13)" for k, name in enumerate(names, 1)
    ]
