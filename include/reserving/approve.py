"""Approve or reject the model pending for a valuation date, or sign off held numbers, by hand.

``python -m include.reserving.approve --valuation-date 2024-12-31 --decision approve --by "Ada Actuary"
--comment "reviewed the model card" --api-url http://airflow:8080 --user ada`` finds the pending challenger (the
lines' challengers on the month's model card; ``--line Motor=reject`` decides one line otherwise) and its
model card's one-time code in the warehouse and sets the Airflow Variable ``reserving_approval__2024-12-31`` through
the api-server as Airflow user ``ada`` (the same as doing it in the UI under Admin > Variables): the audit log then
names ada, and the decision counts if ada is in the ``approvers`` setting. Without ``--api-url`` it runs
``airflow variables set``, which counts only with the setting ``approval_cli_counts``. With ``--numbers`` it finds
the month's held publication instead and sets ``reserving_signoff__2024-12-31``. ``--print-only`` shows the command.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shlex
import subprocess
import sys

from include.reserving import governance
from include.reserving.approval import DECISIONS, MODEL_APPROVAL, NUMBERS_SIGNOFF, check_text
from include.reserving.config import warehouse_url
from include.reserving.dates import parse_valuation_date
from include.reserving.domain import Promotion
from include.reserving.warehouse import decisions, registry, reserves
from include.reserving.warehouse.core import make_engine


def pending_challenger(url: str, valuation_date) -> str:
    """What the approval for V names: the challenger the promotion rule sent to approval (or the proposal of several
    lines' challengers); raises when nothing is pending."""
    return pending_lines(url, valuation_date)[0]


def pending_lines(url: str, valuation_date) -> tuple[str, list[str]]:
    """(what the approval names, the lines it decides) for V; raises when nothing is pending."""
    engine = make_engine(url)
    rows = registry.decisions_at(engine, valuation_date)
    promote = [r for r in rows if r.decision == Promotion.PROMOTE]
    if not promote:
        raise LookupError(
            f"no model is waiting for approval at {valuation_date} (promotion decisions: "
            f"{', '.join(f'{r.segment} {r.decision}' for r in rows) or 'none yet'})"
        )
    decided = {
        r.segment: registry.decision_on(engine, valuation_date, r.challenger_version, r.run_id, r.segment)
        for r in promote
    }
    if all(decided.values()):
        raise LookupError(f"the lines sent to approval at {valuation_date} were already decided: {decided}")
    proposal = governance.proposal_id(valuation_date, {r.segment: r.challenger_version for r in promote})
    return proposal, sorted(decided)


def held_publication(url: str, valuation_date) -> int:
    """The held version of V's reserves that has no sign-off yet; raises when nothing is held."""
    engine = make_engine(url)
    table = reserves.versions(engine, valuation_date)
    decided = set(reserves.signoffs(engine, valuation_date)["publication_version"])
    held = [int(v) for v in table.loc[table["status"] == "held", "version"] if v not in decided]
    if not held:
        raise LookupError(f"no reserves are held for sign-off at {valuation_date}")
    return max(held)


def _code(url: str, kind: str, valuation_date, version) -> str:
    issued = decisions.issued(make_engine(url), kind, valuation_date, version)
    if issued is None:
        raise LookupError(f"no code was issued for {version} at {valuation_date} yet (the card is not out)")
    return issued.code


def write_through_api(api_url: str, user: str, password: str, key: str, value: str) -> None:
    """Set the Variable through the api-server's REST API as ``user``: the audit log names them as its writer."""
    import httpx

    with httpx.Client(base_url=api_url.rstrip("/"), timeout=30) as client:
        token = client.post("/auth/token", json={"username": user, "password": password})
        if token.status_code >= 400:
            raise RuntimeError(f"the api-server refused the login of {user!r} ({token.status_code})")
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        body = {"key": key, "value": value}
        done = client.patch(f"/api/v2/variables/{key}", json=body, headers=headers)
        if done.status_code == 404:  # not set yet
            done = client.post("/api/v2/variables", json=body, headers=headers)
        if done.status_code >= 400:
            raise RuntimeError(f"the api-server refused to set {key} for {user!r} ({done.status_code})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.reserving.approve", description=__doc__.splitlines()[0])
    parser.add_argument("--valuation-date", required=True, help="month end, YYYY-MM-DD")
    parser.add_argument("--decision", choices=["approve", "reject"], required=True)
    parser.add_argument("--by", required=True, help="your name as displayed (who decides is your Airflow user)")
    parser.add_argument("--comment", default="", help="why")
    parser.add_argument("--db", help="warehouse URL (default: the reserving_db connection or the SQLite file)")
    parser.add_argument("--numbers", action="store_true", help="sign off (or reject) the month's held numbers")
    parser.add_argument(
        "--line",
        action="append",
        default=[],
        metavar="LINE=DECISION",
        help="decide this line of the model card otherwise than --decision (repeatable), e.g. --line Motor=reject",
    )
    parser.add_argument("--api-url", help="set the Variable through this api-server as --user (else: airflow CLI)")
    parser.add_argument("--user", help="your Airflow user name (with --api-url; password: $AIRFLOW_PASSWORD or asked)")
    parser.add_argument("--print-only", action="store_true", help="print the airflow command instead of running it")
    args = parser.parse_args(argv)
    try:
        valuation_date = parse_valuation_date(args.valuation_date)
    except ValueError as exc:
        parser.error(f"--valuation-date: {exc}")
    why = check_text(args.by, args.comment)
    if why is not None:
        parser.error(why)
    if args.api_url and not args.user:
        parser.error("--api-url needs --user (your Airflow user name)")
    lines = dict(item.partition("=")[::2] for item in args.line)
    if args.numbers and lines:
        parser.error("--line decides lines of a model card, not held numbers")
    if any(not line or decision not in DECISIONS for line, decision in lines.items()):
        parser.error(f"--line takes LINE=DECISION with a decision in {DECISIONS}, got {args.line}")
    find = held_publication if args.numbers else pending_challenger
    contract = NUMBERS_SIGNOFF if args.numbers else MODEL_APPROVAL
    url = args.db or warehouse_url()
    try:
        version = find(url, valuation_date)
        code = _code(url, decisions.NUMBERS if args.numbers else decisions.MODEL, valuation_date, version)
        asked = [] if args.numbers else pending_lines(url, valuation_date)[1]
    except LookupError as exc:
        print(f"nothing to do: {exc}", file=sys.stderr)
        return 1
    unknown = sorted(set(lines) - set(asked))
    if unknown:
        print(f"nothing to do: --line names {unknown}, not on the model card (its lines: {asked})", file=sys.stderr)
        return 1
    command = contract.command(
        valuation_date, version, args.decision, args.by.strip(), args.comment.strip(), code, lines or None
    )
    if args.print_only:
        print(" ".join(shlex.quote(c) for c in command))
        return 0
    key, value = command[3], command[4]
    try:
        if args.api_url:
            password = os.environ.get("AIRFLOW_PASSWORD") or getpass.getpass(f"Airflow password of {args.user}: ")
            write_through_api(args.api_url, args.user, password, key, value)
        else:
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"airflow variables set exited {done.returncode}: {done.stderr.strip()[-300:]}")
    except (RuntimeError, OSError) as exc:
        print(f"not recorded: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.decision} of {version} for {valuation_date} (code {code}) written to {key}"
        + (f" as Airflow user {args.user}" if args.api_url else " by the airflow CLI")
        + "; the sensor picks it up at its next poke if you are an approver"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
