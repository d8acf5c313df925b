"""``counterctl``: operator commands (migrate, API keys, flush, verify, rebucket)."""

from __future__ import annotations

import argparse
import sys

from service import apikeys
from service.logs import setup_logging
from service.migrate import LayoutMismatch, migrate
from service.ops.commands import flush_command, rebucket_command, verify_command
from service.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="counterctl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply pending SQL migrations (idempotent)")
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    create = keys.add_parser("create", help="create a key; prints it once, as the last line")
    create.add_argument("--tenant", required=True)
    create.add_argument(
        "--scope",
        choices=list(apikeys.SCOPES),
        default=apikeys.DEFAULT_SCOPE,
        help="read: GET only; increment (default): GET and POST; admin: everything",
    )
    _limit_arguments(create)
    update = keys.add_parser(
        "update", help="set a key's rate limit; without --rate the key becomes unlimited"
    )
    update.add_argument("id", type=int)
    _limit_arguments(update)
    listing = keys.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--tenant")
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=int)
    flush = sub.add_parser("flush", help="write dirty counters to PostgreSQL")
    flush.add_argument(
        "--once",
        action="store_true",
        help="one full pass over all dirty buckets, then exit (else: run the loop)",
    )
    verify = sub.add_parser("verify", help="compare Redis with PostgreSQL, counter by counter")
    verify.add_argument("--sample", type=_positive, metavar="N", help="a random sample of N")
    verify.add_argument(
        "--repair",
        action="store_true",
        help="raise Redis where PostgreSQL is ahead; re-mark unflushed counters",
    )
    verify.add_argument("--tenant", help="only this tenant's counters")
    rebucket = sub.add_parser(
        "rebucket",
        help="move a stopped, flushed deployment from COUNTER_BUCKETS to another bucket count",
    )
    rebucket.add_argument("--to", type=_positive, required=True, metavar="N")
    return parser


def _limit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rate", type=float, help="requests per second (default: unlimited)", metavar="R"
    )
    parser.add_argument(
        "--burst",
        type=int,
        metavar="B",
        help="requests allowed at once (needs --rate; default: one second's worth)",
    )


def _limit(r: apikeys.KeyRecord) -> str:
    return "unlimited" if r.rate is None else f"{r.rate:g}/s burst {r.burst}"


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"counterctl: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    try:
        return _run(args, settings)
    except (ValueError, LayoutMismatch) as exc:
        print(f"counterctl: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, settings: Settings) -> int:
    dsn = settings.pg_dsn
    if args.command == "flush":
        return flush_command(settings, args.once)
    if args.command == "verify":
        return verify_command(settings, args.sample, args.repair, args.tenant)
    if args.command == "rebucket":
        return rebucket_command(settings, args.to)
    if args.command == "migrate":
        applied = migrate(settings)
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        return 0
    if args.action == "create":
        record, key = apikeys.create_key(dsn, args.tenant, args.scope, args.rate, args.burst)
        print(
            f"created key id={record.id} tenant={record.tenant} scope={record.scope} "
            f"limit={_limit(record)} (shown once, store it now):"
        )
        print(key)
        return 0
    if args.action == "list":
        head = f"{'id':>6}  {'tenant':<32}  {'prefix':<12}  {'scope':<9}  {'limit':<22}"
        print(f"{head}  {'created':<20}  status")
        for r in apikeys.list_keys(dsn, args.tenant):
            status = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
            created = f"{r.created_at:%Y-%m-%d %H:%M:%S}"
            print(
                f"{r.id:>6}  {r.tenant:<32}  {r.prefix:<12}  {r.scope:<9}  {_limit(r):<22}"
                f"  {created:<20}  {status}"
            )
        return 0
    if args.action == "update":
        if apikeys.update_limits(dsn, args.id, args.rate, args.burst):
            limit = "unlimited" if args.rate is None else f"{args.rate:g}/s"
            print(f"updated key id={args.id}: {limit}; workers apply it within about a second")
            return 0
    elif apikeys.revoke_key(dsn, args.id):
        print(f"revoked key id={args.id}; workers stop accepting it within about a second")
        return 0
    print(f"counterctl: no active key with id {args.id}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
