"""The model card states identity, scope, evaluation and the exact approval instruction."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pypdf import PdfReader

from include.reserving.model_card import (
    ModelCardData,
    approval_cli,
    approval_instruction,
    promotion_decision,
    write_model_card,
)
from tests.include.conftest import CHALLENGER, CHAMPION, VALUATION

KEY = "reserving_approval__2023-12-31"
APPROVE = (
    '{"decision": "approve", "model_version": "xgb_development-20231231-d4e5f6", "by": "<your name>", '
    '"comment": "<why>"}'
)
REJECT = APPROVE.replace('"approve"', '"reject"')


@pytest.fixture(scope="module")
def card(report_data) -> ModelCardData:
    return ModelCardData(
        model_version=CHALLENGER,
        spec={"method": "xgb_development", "params": {"max_depth": 3, "n_estimators": 200, "learning_rate": 0.05}},
        code_sha="3f9c2e1d0b7a6c5e4f3a2b1c0d9e8f7a6b5c4d3e",
        valuation_date=VALUATION,
        data_row_count=len(report_data.cells),
        data_hash="sha256:5be0f1c7d4a1e2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b",
        segments=("Liability", "Motor", "Property"),
        origin_first=dt.date(2021, 1, 1),
        origin_last=dt.date(2023, 10, 1),
        max_development=36,
        holdout_diagonals=4,
        champion_version=CHAMPION,
        champion_spec={"method": "chain_ladder", "params": {"average": "volume"}},
        evaluation=report_data.backtest,
        promotion_delta=0.01,
        drift=report_data.drift,
        retrain_reason="PSI of claimant_age 0.2713 above 0.2",
        approval_timeout_hours=72,
    )


@pytest.fixture(scope="module")
def written(card, tmp_path_factory):
    return write_model_card(card, tmp_path_factory.mktemp("cards"))


def test_approval_instruction_is_the_exact_key_and_json():
    key, value = approval_instruction(VALUATION, CHALLENGER)
    assert key == KEY
    assert value == APPROVE
    assert json.loads(value) == {
        "decision": "approve",
        "model_version": CHALLENGER,
        "by": "<your name>",
        "comment": "<why>",
    }
    assert approval_instruction(VALUATION, CHALLENGER, "reject")[1] == REJECT
    assert approval_cli(VALUATION, CHALLENGER) == f"airflow variables set {KEY} '{APPROVE}'"
    with pytest.raises(ValueError, match="decision"):
        approval_instruction(VALUATION, CHALLENGER, "maybe")


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
        "## 5. Drift context",
        "claimant_age | numeric | 0.2713",
        "## 6. Limitations",
    ):
        assert text in markdown, text
    # Overall: champion score 1 - 0.0842, challenger 1 - 0.0711, delta +0.0131 > 0.01.
    assert "| All lines | 0.0842 | 0.0711 | 61,234.56 | 52,109.87 | +0.0131 |" in markdown
    assert "PROMOTE after approval" in markdown
    assert f"```\n{KEY}\n```" in markdown
    assert f"```\n{APPROVE}\n```" in markdown
    assert f"```\nairflow variables set {KEY} '{APPROVE}'\n```" in markdown
    assert f"```\nairflow variables set {KEY} '{REJECT}'\n```" in markdown


def test_pdf_card_carries_the_same_instruction(written):
    text = "".join(page.extract_text() for page in PdfReader(str(written[1])).pages)
    squeeze = "".join
    assert squeeze(KEY.split()) in squeeze(text.split())
    assert squeeze(APPROVE.split()) in squeeze(text.split())
    assert squeeze(REJECT.split()) in squeeze(text.split())


def test_same_card_gives_identical_pdf_bytes(card, written, tmp_path):
    _, again = write_model_card(card, tmp_path)
    assert again.read_bytes() == written[1].read_bytes()


def test_decision_keeps_the_champion_when_the_gain_is_within_delta(card):
    promote, why = promotion_decision(ModelCardData(**{**card.__dict__, "promotion_delta": 0.02}))
    assert not promote and why.startswith("KEEP the champion")
    promote, why = promotion_decision(ModelCardData(**{**card.__dict__, "champion_version": None}))
    assert promote and "first champion" in why
