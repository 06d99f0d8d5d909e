"""The model card states, per line of business, the challenger against the line's champion (the search's candidates,
scores, bias and why the winner won), the decision recorded per line, what is asked, and the exact approval
instruction; the PDF says what the Markdown says."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from pypdf import PdfReader

from include.reserving.presentation.model_card import (
    LINE_COLUMNS,
    Challenger,
    ModelCardData,
    card_markdown,
    write_model_card,
)
from tests.include.conftest import CHALLENGER, CHAMPION, RULE, UNPAID_BY_LINE, VALUATION
from tests.include.presentation.test_instruction import APPROVE, CODE, KEY, REJECT

SPEC = {"method": "xgb_development", "params": {"max_depth": 3, "n_estimators": 200, "learning_rate": 0.05}}
CL = {"method": "chain_ladder", "params": {}}
CL5 = {"method": "chain_ladder", "params": {"n_periods": 5}}
LIABILITY_REASON = "challenger 0.881000 > champion 0.848000 + delta 0.01"
MOTOR_REASON = "challenger 0.941200 <= champion 0.939000 + delta 0.01"


def _search_rows(segment: str, scores: list[tuple[dict, float, float, bool]]) -> list[dict]:
    return [
        {
            "segment": segment,
            "order": order,
            "spec": json.dumps(spec, sort_keys=True),
            "wape": 1 - score,
            "bias": bias,
            "score": score,
            "eligible": eligible,
        }
        for spec, order, (score, bias, eligible) in (
            (s, [CL, CL5, SPEC].index(s), (score, bias, ok)) for s, score, bias, ok in scores
        )
    ]


# the training search's table as backtest.search returns it: per line and overall (ALL), candidates in order
SEARCH = pd.DataFrame(
    _search_rows("Liability", [(CL, 0.848, 0.031, True), (CL5, 0.852, 0.095, False), (SPEC, 0.881, -0.012, True)])
    + _search_rows("Motor", [(CL, 0.939, 0.010, True), (CL5, 0.930, 0.020, True), (SPEC, 0.9412, 0.004, True)])
    + _search_rows("Property", [(CL, 0.955, 0.002, True), (CL5, 0.950, 0.001, True), (SPEC, 0.947, 0.020, True)])
    + _search_rows("ALL", [(CL, 0.914, 0.0143, True), (CL5, 0.9107, 0.0387, True), (SPEC, 0.9231, 0.004, True)])
)
LINES = pd.DataFrame(
    [
        ("Liability", CHAMPION, CHALLENGER, 0.848, 0.881, -0.012, 0.031, "promote", LIABILITY_REASON),
        ("Motor", CHAMPION, CHALLENGER, 0.939, 0.9412, 0.004, 0.010, "keep", MOTOR_REASON),
        ("Property", CHAMPION, None, None, None, None, 0.002, "none", "no challenger this month"),
    ],
    columns=LINE_COLUMNS,
)

# unpaid by line under each model; the champion's is the fixture book's published unpaid; Property has no challenger
IMPACT = pd.DataFrame(
    {
        "segment": ["Motor", "Liability", "Property"],
        "challenger": [12_600_000.25, 25_000_000.00, float("nan")],
        "champion": [float(UNPAID_BY_LINE[s].replace(",", "")) for s in ("Motor", "Liability", "Property")],
        "paid_cl": [12_400_000.00, 27_100_000.50, 3_500_000.00],
    }
)


@pytest.fixture(scope="module")
def card(report_data) -> ModelCardData:
    return ModelCardData(
        model_version=CHALLENGER,
        challengers=(
            Challenger(
                model_version=CHALLENGER,
                spec=SPEC,
                code_sha="3f9c2e1d0b7a6c5e4f3a2b1c0d9e8f7a6b5c4d3e",
                hyperparameters={**SPEC["params"], "subsample": 0.8, "target": "cl_residual"},
                features=("development", "paid_ratio", "cl_increment"),
                lines=("Liability", "Motor"),
            ),
        ),
        valuation_date=VALUATION,
        data_row_count=len(report_data.cells),
        data_hash="sha256:5be0f1c7d4a1e2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b",
        segments=("Liability", "Motor", "Property"),
        origin_first=dt.date(2021, 1, 1),
        origin_last=dt.date(2023, 10, 1),
        max_development=36,
        holdout_diagonals=4,
        search=SEARCH,
        lines=LINES,
        promotion_delta=0.01,
        bias_margin=0.05,
        reserve_impact=IMPACT,
        selection_rule=RULE,
        drift=report_data.drift,
        retrain_reason="PSI of claimant_age 0.2713 above 0.2",
        approval_timeout_hours=72,
        approval_code=CODE,
    )


@pytest.fixture(scope="module")
def written(card, tmp_path_factory):
    return write_model_card(card, tmp_path_factory.mktemp("cards"))


def test_the_card_says_per_line_what_is_decided_and_what_is_asked(written, card):
    markdown = written[0].read_text()
    assert written[0].name == f"model_card_{CHALLENGER}.md"
    assert (
        "| Line | Champion | Challenger | Champion score | Challenger score | Challenger bias | Chain-ladder bias | "
        "Decision recorded |"
    ) in markdown
    assert (
        f"| Liability | {CHAMPION} | {CHALLENGER} | 0.8480 | 0.8810 | -0.0120 | +0.0310 | PROMOTE after approval |"
        in (markdown)
    )
    assert (
        f"| Motor | {CHAMPION} | {CHALLENGER} | 0.9390 | 0.9412 | +0.0040 | +0.0100 | KEEP the champion |" in markdown
    )
    assert f"| Property | {CHAMPION} | none | n/a | n/a | n/a | +0.0020 | no challenger |" in markdown
    assert f"- Liability: {LIABILITY_REASON.replace('>', chr(92) + '>')}" in markdown
    assert "**This card asks for a decision on 1 line: Liability.**" in markdown
    assert "The other lines keep their champions whatever is decided" in markdown
    assert card.asked == ("Liability",) and card.unchampioned == ()


def test_markdown_card_contains_identity_scope_and_exact_approval(written, card):
    markdown = written[0].read_text()
    for text in (
        CHALLENGER,
        card.challengers[0].code_sha,
        card.data_hash,
        json.dumps(SPEC, sort_keys=True),
        "| Challenger on | Liability, Motor |",
        f"| Data: row count (cells) | {card.data_row_count:,} |",
        "gross of reinsurance",
        "Liability, Motor, Property",
        "2021-01-01 to 2023-10-01",
        "## 7. Drift context",
        "claimant_age | numeric | 0.2713",
        "## 8. Limitations",
        "this card asks about Liability; decision decides every one of them.",
    ):
        assert text in markdown, text
    assert f"```\n{KEY}\n```" in markdown
    assert f"```\n{APPROVE}\n```" in markdown
    assert f"```\nairflow variables set {KEY} '{APPROVE}'\n```" in markdown
    assert f"```\nairflow variables set {KEY} '{REJECT}'\n```" in markdown
    assert "without a decision every line keeps its champion." in markdown


def test_pdf_card_carries_the_same_instruction(written):
    text = "".join(page.extract_text() for page in PdfReader(str(written[1])).pages)
    squeeze = "".join
    assert squeeze(KEY.split()) in squeeze(text.split())
    assert squeeze("This card asks for a decision on 1 line: Liability.".split()) in squeeze(text.split())
    assert squeeze(APPROVE.split()) in squeeze(text.split())
    assert squeeze(REJECT.split()) in squeeze(text.split())


def test_same_card_gives_identical_pdf_bytes(card, written, tmp_path):
    _, again = write_model_card(card, tmp_path)
    assert again.read_bytes() == written[1].read_bytes()


def test_the_search_is_explained_per_line_candidates_scores_bias_and_why_the_winner_won(written):
    markdown = written[0].read_text()
    params = '{"learning_rate": 0.05, "max_depth": 3, "n_estimators": 200}'
    # Liability: XGBoost best (0.881); chain ladder 5 periods scores higher than plain chain ladder but is biased
    liability = markdown[markdown.index("### Liability") : markdown.index("### Motor")]
    assert (
        f"| 1 | xgb_development | {params} | 0.1190 | -0.0120 | 0.8810 | yes | best |\n"
        "| 2 | chain_ladder | {} | 0.1520 | +0.0310 | 0.8480 | yes |  |\n"
        '| 3 | chain_ladder | {"n_periods": 5} | 0.1480 | +0.0950 | 0.8520 | no: biased |  |'
    ) in liability
    assert (
        f"xgb_development {params} won with the best score 0.8810 (bias -0.0120) among the eligible candidates; 1 "
        f"not eligible: bias materially worse than chain ladder's. It is the line's challenger, {CHALLENGER}."
    ) in liability
    # Property: the champion's spec (plain chain ladder) wins: no challenger there
    property_ = markdown[markdown.index("### Property") : markdown.index("### All lines together")]
    assert property_.index("| 1 | chain_ladder | {} | 0.0450 | +0.0020 | 0.9550 | yes | best |") > 0
    assert "It is the champion's spec: no challenger on this line." in property_


def test_a_winner_by_the_one_standard_error_rule_is_explained(card):
    """Motor: XGBoost scores best (0.9412) but chain ladder, 0.0022 behind with a standard error of 0.0040, is the
    simpler candidate within one standard error of it, and wins."""
    from include.reserving.presentation.model_card import _search_by_line

    motor = SEARCH[SEARCH["segment"] == "Motor"].assign(se=[0.004, 0.003, 0.0], selected=[True, False, False])
    (explained,) = _search_by_line(ModelCardData(**{**card.__dict__, "search": motor}))
    params = '{"learning_rate": 0.05, "max_depth": 3, "n_estimators": 200}'
    assert explained["rows"][0][:2] == ["1", "chain_ladder"] and explained["rows"][0][-1] == "best"
    assert explained["why"].startswith(
        "chain_ladder {} won as the simplest eligible candidate within the allowed standard errors of the best score: "
        f"0.9390 (bias +0.0100) against xgb_development {params}'s 0.9412, a gap of 0.0022 against a standard error "
        "of 0.0040"
    )


def test_a_card_without_a_recorded_search_says_so(card):
    markdown = card_markdown(ModelCardData(**{**card.__dict__, "search": SEARCH.iloc[:0]}))
    assert "The training search's candidates were not recorded with this model." in markdown
    assert "| Rank |" not in markdown


def test_card_shows_the_unpaid_by_line_under_challenger_champion_and_paid_chain_ladder(written):
    markdown = written[0].read_text()
    assert (
        "| Line | Challenger | Champion | Paid chain ladder | Challenger - what reserves without approval |"
    ) in markdown
    # challenger less the line's champion: 25,000,000.00 - 25,971,208.13; Property has no challenger
    assert (
        "| Liability | 25,000,000.00 | 25,971,208.13 | 27,100,000.50 | -971,208.13 |\n"
        "| Motor | 12,600,000.25 | 12,507,450.74 | 12,400,000.00 | +92,549.51 |\n"
        "| Property | n/a | 3,453,906.82 | 3,500,000.00 | n/a |\n"
        "| All lines | n/a | 41,932,565.69 | 43,000,000.50 |  |"
    ) in markdown
    assert f"the selection rule ({RULE})" in markdown


def test_card_states_every_hyperparameter_and_the_features(written, card):
    markdown = written[0].read_text()
    assert (
        "| Hyperparameter | Value |\n|---|---|\n| learning_rate | 0.05 |\n| max_depth | 3 |\n"
        '| n_estimators | 200 |\n| subsample | 0.8 |\n| target | "cl_residual" |'
    ) in markdown
    assert "Features the model learns from: development, paid_ratio, cl_increment." in markdown


def test_a_card_of_two_challengers_and_a_line_without_champion(card):
    """Lines with different challengers: each version's identity, the proposal the approval names, a decision per
    line (the instruction's mixed example), and what reserves a line without a champion when rejected."""
    chain = Challenger(model_version="20231231-chain_ladder-0a1b2c3d4e", spec=CL5, code_sha="abc", lines=("Motor",))
    lines = LINES.copy()
    lines.loc[1, ["challenger_version", "decision", "reason"]] = [chain.model_version, "promote", "better"]
    lines.loc[0, "champion_version"] = None
    proposal = "20231231-lines-5f5f5f5f5f"
    two = ModelCardData(
        **{
            **card.__dict__,
            "model_version": proposal,
            "challengers": (card.challengers[0], chain),
            "lines": lines,
        }
    )
    assert (two.asked, two.unchampioned) == (("Liability", "Motor"), ("Liability",))
    markdown = card_markdown(two)
    assert f"# Model card: {proposal}" in markdown
    assert "| Model version | 20231231-chain_ladder-0a1b2c3d4e |\n| Method | chain_ladder |" in markdown
    assert "Features: none; the method learns development factors from the triangle only." in markdown
    assert "| Liability | none yet (chain-ladder fallback) |" in markdown
    assert "**This card asks for a decision on 2 lines: Liability, Motor.**" in markdown
    assert (
        "(on Liability, which has no champion yet, the month is then reserved by the chain-ladder fallback" in markdown
    )
    assert '"model_version": "20231231-lines-5f5f5f5f5f"' in markdown
    assert "Value to approve Liability and reject the other lines (example):" in markdown
    assert '"lines": {"Motor": "reject"}' in markdown


def test_markdown_escapes_what_markdown_would_read_as_markup(card):
    odd = ModelCardData(**{**card.__dict__, "segments": ("Motor | <b>Fleet</b>",), "retrain_reason": "*PSI* [x]"})
    markdown = card_markdown(odd)
    assert "Motor \\| \\<b\\>Fleet\\</b\\>" in markdown
    assert "Why retraining ran: \\*PSI\\* \\[x\\]" in markdown
