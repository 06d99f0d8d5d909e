"""Artifact locations under the artifact root: a local folder by default, any fsspec URL (s3://, gs://) in production.

Writers produce files in a local folder and ``publish_dir`` copies them under the root when it is remote; readers
get a local copy with ``local_dir``. Layout (keyed, never overwritten by another run):

    models/<model_version>/                     spec.json, training cells, booster JSON
    runs/<YYYY-MM-DD>/<run_id>/quality/         GX validation results + Data Docs
    runs/<YYYY-MM-DD>/<run_id>/reserves.json    the rows to publish
    runs/<YYYY-MM-DD>/<run_id>/report.pdf       reserve report; model_card.{md,pdf}
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from pathlib import Path

import fsspec


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])


def safe(part: str) -> str:
    """A run id as a path segment (run ids carry ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", part)


def model_card_stem(model_version: str) -> str:
    """A model card's file stem: ``model_card_<version>`` with anything but letters, digits and ``-_.`` as ``_``."""
    return "model_card_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in model_version)


def run_dir(root: str, valuation_date: dt.date, run_id: str) -> str:
    return join(root, "runs", f"{valuation_date:%Y-%m-%d}", safe(run_id))


def model_dir(root: str, model_version: str) -> str:
    return join(root, "models", safe(model_version))


def writable_dir(uri: str) -> Path:
    """A local folder to write ``uri``'s files into: the folder itself when local, else a temporary one."""
    if is_local(uri):
        path = _local_path(uri)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix="reserving_"))


def publish_dir(local: Path, uri: str) -> str:
    """Copy a folder written by :func:`writable_dir` to ``uri`` when that is remote; returns ``uri``."""
    if not is_local(uri):
        fs, path = fsspec.core.url_to_fs(uri)
        fs.put(f"{local}/", f"{path.rstrip('/')}/", recursive=True)  # trailing slashes: copy contents, not the folder
    return uri


def local_dir(uri: str) -> Path:
    """A local folder holding ``uri``'s files (a download for remote roots)."""
    if is_local(uri):
        return _local_path(uri)
    target = Path(tempfile.mkdtemp(prefix="reserving_"))
    fs, path = fsspec.core.url_to_fs(uri)
    fs.get(f"{path.rstrip('/')}/", f"{target}/", recursive=True)
    return target


def write_text(uri: str, text: str) -> str:
    with fsspec.open(uri if not is_local(uri) else str(_local_path(uri)), "w", auto_mkdir=True) as fh:
        fh.write(text)
    return uri


def read_text(uri: str) -> str:
    with fsspec.open(uri if not is_local(uri) else str(_local_path(uri)), "r") as fh:
        return fh.read()
