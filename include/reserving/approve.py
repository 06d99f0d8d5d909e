"""Approve or reject the model pending for a valuation date, or sign off held numbers, by hand.

``python -m include.reserving.approve --valuation-date 2024-12-31 --decision approve --by "Ada Actuary"
--comment "reviewed the model card"`` finds the pending challenger in the warehouse and sets the Airflow Variable
``reserving_approval__2024-12-31`` with ``airflow variables set`` (the same as doing it in the UI under
Admin > Variables). With ``--numbers`` it finds the month's held publication instead and sets
``reserving_signoff__2024-12-31``. ``--print-only`` shows the command instead of running it.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from include.reserving.approval import MODEL_APPROVAL, NUMBERS_SIGNOFF
from include.reserving.config import warehouse_url
from include.reserving.dates import parse_valuation_date
from include.reserving.domain import Promotion
from include.reserving.warehouse import registry, reserves
from include.reserving.warehouse.core import make_engine


def pending_challenger(url: str, valuation_date) -> str:
    """The challenger the promotion rule sent to approval for V; raises when nothing is pending."""
    engine = make_engine(url)
    row = registry.decision_at(engine, valuation_date)
    if row is None or row.decision != Promotion.PROMOTE:
        raise LookupError(
            f"no model is waiting for approval at {valuation_date} (promotion decision: "
            f"{row.decision if row else 'none yet'})"
        )
    decided = registry.decision_on(engine, valuation_date, row.challenger_version, row.run_id)
    if decided is not None:
        raise LookupError(f"model {row.challenger_version} at {valuation_date} was already decided: {decided}")
    return row.challenger_version


def held_publication(url: str, valuation_date) -> int:
    """The held version of V's reserves that has no sign-off yet; raises when nothing is held."""
    engine = make_engine(url)
    table = reserves.versions(engine, valuation_date)
    decided = set(reserves.signoffs(engine, valuation_date)["publication_version"])
    held = [int(v) for v in table.loc[table["status"] == "held", "version"] if v not in decided]
    if not held:
        raise LookupError(f"no reserves are held for sign-off at {valuation_date}")
    return max(held)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--valuation-date", required=True, help="month end, YYYY-MM-DD")
    parser.add_argument("--decision", choices=["approve", "reject"], required=True)
    parser.add_argument("--by", required=True, help="who decides (recorded in the approvals table)")
    parser.add_argument("--comment", default="", help="why")
    parser.add_argument("--db", help="warehouse URL (default: the reserving_db connection or the SQLite file)")
    parser.add_argument("--numbers", action="store_true", help="sign off (or reject) the month's held numbers")
    parser.add_argument("--print-only", action="store_true", help="print the airflow command instead of running it")
    args = parser.parse_args(argv)
    valuation_date = parse_valuation_date(args.valuation_date)
    find = held_publication if args.numbers else pending_challenger
    try:
        version = find(args.db or warehouse_url(), valuation_date)
    except LookupError as exc:
        print(f"nothing to do: {exc}", file=sys.stderr)
        return 1
    contract = NUMBERS_SIGNOFF if args.numbers else MODEL_APPROVAL
    command = contract.command(valuation_date, version, args.decision, args.by, args.comment)
    print(" ".join(shlex.quote(c) for c in command))
    if args.print_only:
        return 0
    subprocess.run(command, check=True, capture_output=True)
    print(
        f"{args.decision} of {version} for {valuation_date} recorded by {args.by}; the sensor picks it up at its "
        "next poke"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
