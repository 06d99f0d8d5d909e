"""Smoke test of the scale benchmark on a tiny book (its tasks in the test's process, for speed): the section's
structure, and the monthly run taking the incremental ingest after a clean first valuation."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_scale


@pytest.mark.postgres
def test_bench_scale_writes_its_section_and_the_monthly_ingest_is_incremental(pg_url, tmp_path):
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    results = tmp_path / "scale.json"
    args = ["--sizes", "2000", "--repeat", "1", "--scan-repeat", "1", "--in-process", "--pg-admin-url", pg_url]
    args += ["--results", str(results), "--task-log", str(tmp_path), "--markdown", str(markdown)]

    (size,) = bench_scale.main(args)

    assert size["claims"] == 2000 and size["transactions"] > 10_000
    assert list(size["first"]) == list(bench_scale.TASKS) and len(size["monthly"]) == 1 and len(size["scans"]) == 1
    first, monthly = size["first"]["ingest"], size["monthly"][0]["ingest"]
    assert first["path"] == "full" and "was not ingested" in first["why"]
    assert monthly["path"] == "incremental" and "2024-11-30 was ingested and gated clean" in monthly["why"]
    assert monthly["result"]["path"] == "incremental"  # the log line and the task's result agree
    assert all(task["rss_mb"] > 50 for run in [size["first"], *size["monthly"]] for task in run.values())
    assert size["disk"]["database"] > size["disk"]["source"] > 0 and size["disk"]["pipeline"] > 0
    assert json.loads(results.read_text())[0]["claims"] == 2000

    text = markdown.read_text()
    assert "## Other\n\nkept" in text
    section = text.split("## Scale\n", 1)[1]
    assert (
        "Reproduce: `python benchmarks/bench_scale.py --sizes 2000 --repeat 1 --scan-repeat 1 --in-process`" in section
    )
    assert "(`--in-process`): memory is not per task." in section
    assert "| | 0.002M claims |" in section
    assert "| (b) monthly ingest path | incremental |" in section
    for task in bench_scale.TASKS:
        assert f"| `input.{task}` |" in section
    assert "- 2,000 claims, monthly (2024-12-31): incremental path (2024-11-30 was ingested and gated clean" in section
    assert section.count("- Peak RSS under 1 GB per task at every size") == 1
