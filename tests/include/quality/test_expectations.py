"""Checks of the suite become Great Expectations expectations with the same arguments, description and key."""

from include.reserving.config import Settings
from include.reserving.quality.expectations import CLASSES, ExpectNoBadRows, expectation
from include.reserving.quality.suite import CHECKS, VOLUME_CHECK, build_checks
from tests.include.quality.book import SETTINGS, V


def test_every_expectation_type_of_the_table_is_known():
    assert {c.expectation for c in CHECKS} == set(CLASSES)


def test_a_check_becomes_an_expectation_carrying_its_key():
    checks = build_checks(V, "as_recorded", Settings(extra_claim_types=("Legal",)), baseline=100)
    built = {c.key: expectation(c) for c in checks}
    for check in checks:
        assert built[check.key].expectation_type == check.expectation
        assert built[check.key].description == check.description
        assert built[check.key].meta == {"check_key": check.key}
    assert built["snapshot_claims.claim_type.allowed"].value_set == ["BodilyInjury", "Legal", "PropertyDamage"]
    assert (built[VOLUME_CHECK].min_value, built[VOLUME_CHECK].max_value) == (50, 150)
    assert expectation(checks[0]) is not built[checks[0].key]  # a fresh object each time: pass 2 builds its own


def test_query_checks_count_and_show_bad_rows_in_one_pass():
    checks = {c.key: c for c in build_checks(V, "as_recorded", SETTINGS)}
    unique = expectation(checks["transactions_extract.transaction_id.unique"])
    assert isinstance(unique, ExpectNoBadRows) and unique.column_list == ["transaction_id"]
    assert ExpectNoBadRows.metric_dependencies == ("unexpected_rows_query.table",)  # no second count query
