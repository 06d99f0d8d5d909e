"""The data-quality gate: a Great Expectations 1.x suite, declared here as data, validated inside the warehouse.

The gate checks the extract as at valuation date V (``basis`` ``as_recorded``: transactions recorded by the end of
V; ``restated``: latest knowledge, transactions dated by V) and the claim snapshot ingest wrote for (V, basis). GX runs
every check as SQL through its SQL data source (SQLite or PostgreSQL): no rows are pulled into pandas.

- ``suite``: the checks as a table (key, asset, description, expectation type, arguments), built for V;
- ``queries``: the SQL of the checks that count and show bad rows in one pass;
- ``expectations``: the package's own GX expectations and the check -> GX expectation step;
- ``decisions``: pure functions: the volume baseline, incremental uniqueness, missing columns, second-pass examples;
- ``runner``: ``run_quality_gate`` (views, the suite for V, the passes, artifacts), ``previous_gate``;
- ``validation``: the GX context, data source and the two passes;
- ``report``: ``CheckResult``, ``QualityReport``, ``QualityGateError``, ``raise_for_failures``.

Results are stored by ``include.reserving.warehouse.quality``. Importing this package imports no GX: only running a
gate does (``runner`` imports ``validation`` then).
"""
