import datetime as dt

from include.reserving.quality.queries import BAD_ROWS, EXAMPLE_COUNT, bad_rows_query, duplicates_query


def test_duplicates_are_one_group_by_without_a_window_over_the_rows():
    duplicates = duplicates_query(["claim_id", "transaction_date"])
    assert "GROUP BY claim_id, transaction_date HAVING count(*) > 1" in duplicates
    assert "OVER (PARTITION" not in duplicates and duplicates.count("{batch}") == 1
    assert f"sum(copies) OVER () AS {BAD_ROWS}" in duplicates and duplicates.endswith(f"LIMIT {EXAMPLE_COUNT}")
    # the window under the ORDER BY ... LIMIT, not beside it (PostgreSQL then plans the grouping for every row)
    assert ") AS duplicate_groups) AS counted ORDER BY claim_id, transaction_date LIMIT" in duplicates


def test_duplicates_after_a_clean_month_look_at_the_groups_of_new_rows():
    since = duplicates_query(["claim_id", "transaction_date"], dt.datetime(2024, 2, 1))
    assert (
        "(claim_id, transaction_date) IN (SELECT claim_id, transaction_date FROM {batch} "
        "WHERE recorded_at >= '2024-02-01 00:00:00')" in since
    )
    assert "transaction_id IN (SELECT transaction_id FROM" in duplicates_query(
        ["transaction_id"], dt.datetime(2024, 2, 1)
    )


def test_bad_rows_are_counted_over_the_batch_and_a_few_shown():
    query = bad_rows_query(["claim_id", "report_date"], "report_date < accident_date", "claim_id")
    assert query == (
        "SELECT claim_id, report_date, count(*) OVER () AS bad_rows FROM {batch} WHERE report_date < accident_date "
        "ORDER BY claim_id LIMIT 5"
    )
