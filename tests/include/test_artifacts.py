"""Artifact locations: a local folder, and an fsspec URL (memory://, standing in for s3:// or gs://)."""

import datetime as dt

from include.reserving import artifacts


def test_run_folder_is_keyed_by_valuation_date_and_run():
    uri = artifacts.run_dir("s3://bucket/reserving", dt.date(2024, 1, 31), "manual__2024-02-01T00:00:00+00:00")
    assert uri == "s3://bucket/reserving/runs/2024-01-31/manual__2024-02-01T00_00_00_00_00"


def test_local_root_round_trip(tmp_path):
    uri = artifacts.join(str(tmp_path), "runs", "x")
    local = artifacts.writable_dir(uri)
    (local / "a.txt").write_text("42")
    assert artifacts.publish_dir(local, uri) == uri
    assert (artifacts.local_dir(uri) / "a.txt").read_text() == "42"
    artifacts.write_text(artifacts.join(uri, "b.json"), "{}")
    assert artifacts.read_text(artifacts.join(uri, "b.json")) == "{}"


def test_remote_root_uploads_and_downloads_whole_folders():
    uri = "memory://reserving-test/models/v1"
    local = artifacts.writable_dir(uri)
    (local / "spec.json").write_text('{"method": "chain_ladder"}')
    (local / "sub").mkdir()
    (local / "sub" / "booster.json").write_text("{}")
    artifacts.publish_dir(local, uri)
    back = artifacts.local_dir(uri)
    assert (back / "spec.json").read_text() == '{"method": "chain_ladder"}'
    assert (back / "sub" / "booster.json").read_text() == "{}"
    artifacts.write_text("memory://reserving-test/runs/r.json", "[1]")
    assert artifacts.read_text("memory://reserving-test/runs/r.json") == "[1]"
