"""The model card states identity, scope, evaluation, the recorded decision and the exact approval instruction; the
PDF says what the Markdown says."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
from pypdf import PdfReader

from include.reserving.presentation.model_card import ModelCardData, card_markdown, write_model_card
from tests.include.conftest import CHALLENGER, CHAMPION, RULE, TOTAL_UNPAID, UNPAID_BY_LINE, VALUATION
from tests.include.presentation.test_instruction import APPROVE, CODE, KEY, REJECT

STORED_REASON = "challenger 0.928900 > champion 0.915800 + delta 0.01"
SPEC = {"method": "xgb_development", "params": {"max_depth": 3, "n_estimators": 200, "learning_rate": 0.05}}
# the training search's table as select_spec returns it, best first
CANDIDATES = pd.DataFrame(
    [
        (json.dumps(SPEC, sort_keys=True), 0.0700, -0.0123, 0.9300),
        (json.dumps({"method": "chain_ladder", "params": {}}), 0.0850, 0.0310, 0.9150),
        (json.dumps({"method": "chain_ladder", "params": {"n_periods": 5}}), 0.0900, 0.0420, 0.9100),
    ],
    columns=["spec", "mean_wape", "mean_bias", "mean_score"],
)

# unpaid by line under each model; the champion's is the fixture book's published unpaid
IMPACT = pd.DataFrame(
    {
        "segment": ["Motor", "Liability", "Property"],
        "challenger": [12_600_000.25, 25_000_000.00, 3_400_000.10],
        "champion": [float(UNPAID_BY_LINE[s].replace(",", "")) for s in ("Motor", "Liability", "Property")],
        "paid_cl": [12_400_000.00, 27_100_000.50, 3_500_000.00],
    }
)


@pytest.fixture(scope="module")
def card(report_data) -> ModelCardData:
    return ModelCardData(
        model_version=CHALLENGER,
        spec=SPEC,
        code_sha="3f9c2e1d0b7a6c5e4f3a2b1c0d9e8f7a6b5c4d3e",
        hyperparameters={**SPEC["params"], "subsample": 0.8, "target": "cl_residual"},
        features=("development", "paid_ratio", "cl_increment"),
        valuation_date=VALUATION,
        data_row_count=len(report_data.cells),
        data_hash="sha256:5be0f1c7d4a1e2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b",
        segments=("Liability", "Motor", "Property"),
        origin_first=dt.date(2021, 1, 1),
        origin_last=dt.date(2023, 10, 1),
        max_development=36,
        holdout_diagonals=4,
        candidates=CANDIDATES,
        champion_version=CHAMPION,
        champion_spec={"method": "chain_ladder", "params": {"average": "volume"}},
        evaluation=report_data.backtest,
        decision="promote",
        decision_reason=STORED_REASON,
        promotion_delta=0.01,
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


def test_markdown_card_contains_identity_scope_evaluation_and_exact_approval(written, card):
    markdown = written[0].read_text()
    assert written[0].name == f"model_card_{CHALLENGER}.md"
    for text in (
        CHALLENGER,
        card.code_sha,
        card.data_hash,
        json.dumps(card.spec, sort_keys=True),
        f"| Data: row count (cells) | {card.data_row_count:,} |",
        "gross of reinsurance",
        "Liability, Motor, Property",
        "2021-01-01 to 2023-10-01",
        CHAMPION,
        "## 7. Drift context",
        "claimant_age | numeric | 0.2713",
        "## 8. Limitations",
    ):
        assert text in markdown, text
    # Overall: champion score 1 - 0.0842, challenger 1 - 0.0711, delta +0.0131 > 0.01.
    assert "| All lines | 0.0842 | 0.0711 | 61,234.56 | 52,109.87 | +0.0131 |" in markdown
    escaped = STORED_REASON.replace(">", "\\>")  # Markdown would read a bare > as markup
    assert f"Decision recorded by the evaluate stage: PROMOTE after approval ({escaped})." in markdown
    assert f"```\n{KEY}\n```" in markdown
    assert f"```\n{APPROVE}\n```" in markdown
    assert f"```\nairflow variables set {KEY} '{APPROVE}'\n```" in markdown
    assert f"```\nairflow variables set {KEY} '{REJECT}'\n```" in markdown


def test_pdf_card_carries_the_same_instruction(written):
    text = "".join(page.extract_text() for page in PdfReader(str(written[1])).pages)
    squeeze = "".join
    assert squeeze(KEY.split()) in squeeze(text.split())
    assert squeeze(f"PROMOTE after approval ({STORED_REASON})".split()) in squeeze(text.split())
    assert squeeze(APPROVE.split()) in squeeze(text.split())
    assert squeeze(REJECT.split()) in squeeze(text.split())


def test_same_card_gives_identical_pdf_bytes(card, written, tmp_path):
    _, again = write_model_card(card, tmp_path)
    assert again.read_bytes() == written[1].read_bytes()


def test_card_states_the_stored_decision_without_re_running_the_rule(card):
    """A decision to keep stays "keep" on the card, whatever the scores would say under today's delta."""
    kept = card_markdown(ModelCardData(**{**card.__dict__, "decision": "keep", "decision_reason": "recorded: keep"}))
    assert "Decision recorded by the evaluate stage: KEEP the champion (recorded: keep)." in kept
    first = ModelCardData(
        **{
            **card.__dict__,
            "champion_version": None,
            "champion_spec": None,
            "decision_reason": "no champion yet: the first challenger needs approval",
        }
    )
    markdown = card_markdown(first)
    assert "First model: no champion yet; this challenger would be the first approved model." in markdown
    assert "beat the champion" not in markdown
    assert "without a decision the champion stays" not in markdown
    assert (
        "Rejected or without a decision, there is still no champion: the month's reserves are preliminary, from the "
        "chain-ladder fallback"
    ) in markdown
    assert "PROMOTE after approval (no champion yet: the first challenger needs approval)" in markdown


def test_markdown_escapes_what_markdown_would_read_as_markup(card):
    odd = ModelCardData(**{**card.__dict__, "segments": ("Motor | <b>Fleet</b>",), "retrain_reason": "*PSI* [x]"})
    markdown = card_markdown(odd)
    assert "Motor \\| \\<b\\>Fleet\\</b\\>" in markdown
    assert "Why retraining ran: \\*PSI\\* \\[x\\]" in markdown


def test_card_lists_every_candidate_of_the_search_with_its_scores_and_marks_the_challenger(written):
    markdown = written[0].read_text()
    params = '{"learning_rate": 0.05, "max_depth": 3, "n_estimators": 200}'
    assert f"| 1 | xgb_development | {params} | 0.0700 | -0.0123 | 0.9300 | challenger |" in markdown
    assert "| 2 | chain_ladder | {} | 0.0850 | +0.0310 | 0.9150 |  |" in markdown
    assert '| 3 | chain_ladder | {"n_periods": 5} | 0.0900 | +0.0420 | 0.9100 |  |' in markdown
    assert "won the search by the best score" in markdown
    assert "materially further from zero than the plain chain ladder's was not eligible" in markdown
    assert "beat it on the same backtest by more than the promotion delta" in markdown


def test_a_card_without_a_recorded_search_says_so(card):
    markdown = card_markdown(ModelCardData(**{**card.__dict__, "candidates": CANDIDATES.iloc[:0]}))
    assert "The training search's candidates were not recorded with this model." in markdown
    assert "| Rank |" not in markdown


def test_card_shows_the_unpaid_by_line_under_challenger_champion_and_paid_chain_ladder(written):
    markdown = written[0].read_text()
    assert "| Line | Challenger | Champion | Paid chain ladder | Challenger - champion |" in markdown
    # challenger less champion: 25,000,000.00 - 25,971,208.13 and so on; lines in order, all lines last
    assert (
        "| Liability | 25,000,000.00 | 25,971,208.13 | 27,100,000.50 | -971,208.13 |\n"
        "| Motor | 12,600,000.25 | 12,507,450.74 | 12,400,000.00 | +92,549.51 |\n"
        "| Property | 3,400,000.10 | 3,453,906.82 | 3,500,000.00 | -53,906.72 |\n"
        f"| All lines | 41,000,000.35 | {TOTAL_UNPAID} | 43,000,000.50 | -932,565.34 |"
    ) in markdown
    assert f"the selection rule ({RULE})" in markdown


def test_card_states_every_hyperparameter_and_the_features(written, card):
    markdown = written[0].read_text()
    assert (
        "| Hyperparameter | Value |\n|---|---|\n| learning_rate | 0.05 |\n| max_depth | 3 |\n"
        '| n_estimators | 200 |\n| subsample | 0.8 |\n| target | "cl_residual" |'
    ) in markdown
    assert "Features the model learns from: development, paid_ratio, cl_increment." in markdown
    chain_ladder = card_markdown(ModelCardData(**{**card.__dict__, "hyperparameters": {}, "features": ()}))
    assert "Features: none; the method learns development factors from the triangle only." in chain_ladder
    assert "| Hyperparameter |" not in chain_ladder


def test_a_first_card_shows_the_challenger_against_the_paid_chain_ladder_baseline(card):
    """No champion: the evaluation compares the baseline's backtest rows, and the reserve impact paid chain ladder."""
    ev = card.evaluation
    baseline = ev[ev["role"] == "champion"].assign(role="baseline", model_version="20231231-chain_ladder-0a1b2c3d4e")
    first = ModelCardData(
        **{
            **card.__dict__,
            "champion_version": None,
            "champion_spec": None,
            "evaluation": pd.concat([ev[ev["role"] == "challenger"], baseline]),
            "reserve_impact": IMPACT.assign(champion=float("nan")),
        }
    )
    markdown = card_markdown(first)
    assert "## 5. Evaluation against the baseline" in markdown
    assert "| Segment | Baseline WAPE | Challenger WAPE | Baseline RMSE | Challenger RMSE | Score delta |" in markdown
    # the baseline's scores are the champion's rows of the fixture: 0.0842 - 0.0711 = +0.0131
    assert "| All lines | 0.0842 | 0.0711 | 61,234.56 | 52,109.87 | +0.0131 |" in markdown
    # challenger less paid chain ladder: 25,000,000.00 - 27,100,000.50; total 41,000,000.35 - 43,000,000.50
    assert "| Line | Challenger | Champion | Paid chain ladder | Challenger - paid CL |" in markdown
    assert "| Liability | 25,000,000.00 | n/a | 27,100,000.50 | -2,100,000.50 |" in markdown
    assert "| All lines | 41,000,000.35 | n/a | 43,000,000.50 | -2,000,000.15 |" in markdown
    assert "| All lines | n/a |" not in markdown
