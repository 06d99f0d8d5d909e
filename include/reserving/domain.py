"""The domain's named values, spelled once: data bases, decisions, model and publication statuses, the overall
segment, the claim types the book knows. String enums, so they compare equal to (and store as) their values.
"""

from __future__ import annotations

from enum import StrEnum


class Basis(StrEnum):
    """Which rows a snapshot at V holds: what was recorded by V (reproducible) or everything known now."""

    AS_RECORDED = "as_recorded"
    RESTATED = "restated"


class Promotion(StrEnum):
    """The champion/challenger rule's verdict for V."""

    PROMOTE = "promote"  # the challenger beat the champion by more than delta: ask for approval
    KEEP = "keep"
    NONE = "none"  # no challenger this month


class Decision(StrEnum):
    """An actuary's decision on a pending model (or its absence)."""

    APPROVE = "approve"
    REJECT = "reject"
    TIMEOUT = "timeout"


class ModelStatus(StrEnum):
    CANDIDATE = "candidate"
    CHAMPION = "champion"
    RETIRED = "retired"
    REJECTED = "rejected"


class ChampionAction(StrEnum):
    PROMOTED = "promoted"  # a new spec, approved
    REFITTED = "refitted"  # the approved spec on newer data: routine


class Role(StrEnum):
    CHAMPION = "champion"
    CHALLENGER = "challenger"


# The backtest role of paid chain ladder (the fallback spec) when there is no champion to compare a first challenger to
BASELINE = "baseline"


class PublicationStatus(StrEnum):
    APPROVED = "approved"  # from an approved champion
    PRELIMINARY = "preliminary"  # no approved model yet
    HELD = "held"  # a movement beyond the hold tolerance: stored, never current until an actuary signs it off


# Claim attributes (columns of claims) a reserving segment may be defined by (setting segment_by)
SEGMENT_ATTRIBUTES = ("line_of_business", "claim_type", "region")
# How the values of a segment's attributes are joined into its label, e.g. "Motor | North"
SEGMENT_SEPARATOR = " | "

INITIAL_INCURRED_DAYS = 30  # a claim's initial incurred: what was booked within this many days of its report
OVERALL = "ALL"  # the segment label of scores over every line
CLAIM_TYPES = ("BodilyInjury", "PropertyDamage")  # allowed besides the extra_claim_types setting
TRANSACTION_STATUSES = ("open", "closed", "reopened")  # a transaction row's event, exactly (case matters)
