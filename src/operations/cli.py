"""The operator commands of `meterflow`: lag, dead-letters, replay, reconcile. Tables for
people, `--json` for machines; replay and reconcile exit 1 when anything differs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from meterflow.aggregator_usage import UsageClient, aggregator_urls
from meterflow.errors import ConfigurationError
from meterflow.settings import Settings
from operations import dead_letters as dl
from operations.lag import consumer_lag
from operations.reconcile import reconcile
from operations.replay import compare
from operations.terms import Filters

COMMANDS = ("lag", "dead-letters", "replay", "reconcile")


def instant(raw: str) -> datetime:
    """An ISO date or date-time from the command line; without an offset it is UTC."""
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not an ISO date or date-time, e.g. 2026-11-01 or 2026-11-01T12:00Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _scope(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--organization", help="organization id (uuid)")
    parser.add_argument("--customer", help="external customer id")
    parser.add_argument("--subscription", help="external subscription id")
    parser.add_argument("--from", dest="since", type=instant, help="start (ISO), inclusive")
    parser.add_argument("--to", dest="until", type=instant, help="end (ISO), exclusive")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _letter_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", help="only this reason, e.g. unknown_subscription")
    parser.add_argument("--service", choices=("aggregator", "invoicer"))
    parser.add_argument("--organization", help="organization id of the event")
    parser.add_argument("--subscription", help="external subscription id of the event")
    parser.add_argument("--since", type=instant, help="dead-lettered at or after (ISO)")
    parser.add_argument("--until", type=instant, help="dead-lettered before (ISO)")


def add_commands(sub: Any) -> None:
    """The operator subcommands, on `meterflow`'s subparsers."""
    lag = sub.add_parser("lag", help="offset and time lag per consumer group and partition")
    lag.add_argument("--group", action="append", help="only this group (repeatable)")
    lag.add_argument("--json", action="store_true", help="print JSON for machines")

    letters = sub.add_parser("dead-letters", help="list, show and requeue dead letters")
    actions = letters.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="dead letters matching the filters")
    _letter_filters(listing)
    listing.add_argument("--json", action="store_true", help="print JSON for machines")
    show = actions.add_parser("show", help="one dead letter with its payload and reason")
    show.add_argument("id", help="partition:offset, as `list` shows")
    again = actions.add_parser("requeue", help="send dead letters back to their topic")
    again.add_argument("ids", nargs="*", help="partition:offset ids, as `list` shows")
    again.add_argument("--all", action="store_true", help="every one matching the filters")
    again.add_argument("--again", action="store_true", help="also those requeued before")
    _letter_filters(again)

    replay = sub.add_parser(
        "replay", help="recount the events topic in scratch state against invoices and ledgers"
    )
    _scope(replay)
    replay.add_argument("--only-differences", action="store_true")

    rec = sub.add_parser(
        "reconcile", help="recompute closed periods' invoices and diff them against Postgres"
    )
    _scope(rec)
    rec.add_argument("--invoice", help="only this invoice (lago id)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the operator command `args.command`; its exit status."""
    handlers = {
        "lag": _lag,
        "dead-letters": _dead_letters,
        "replay": _replay,
        "reconcile": _reconcile,
    }
    result: int = asyncio.run(handlers[args.command](args, settings))
    return result


def _out() -> Console:
    """Tables as wide as they need (a pipe or a file gets whole lines, not a wrapped 80)."""
    console = Console(highlight=False)
    return console if console.is_terminal else Console(highlight=False, width=200)


def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


async def _lag(args: argparse.Namespace, settings: Settings) -> int:
    rows = await consumer_lag(settings.bootstrap_servers, settings.topics, args.group)
    now = datetime.now(UTC)
    if args.json:
        _print_json(
            [
                {
                    "group": r.group,
                    "topic": r.topic,
                    "partition": r.partition,
                    "committed": r.committed,
                    "end": r.end,
                    "lag": r.lag,
                    "waiting_seconds": r.waiting_seconds(now),
                    "newest_applied_age_seconds": r.applied_age(now),
                }
                for r in rows
            ]
        )
        return 0
    table = _table(
        "group",
        "topic",
        "partition",
        "committed",
        "end",
        "lag",
        "waiting",
        "newest applied (age)",
    )
    for r in rows:
        table.add_row(
            r.group,
            r.topic,
            str(r.partition),
            str(r.committed if r.committed is not None else "-"),
            str(r.end),
            str(r.lag),
            _age(r.waiting_seconds(now)),
            _age(r.applied_age(now)),
        )
    out = _out()
    out.print(table)
    out.print(
        f"{len({r.group for r in rows})} group(s), total lag {sum(r.lag for r in rows)} records"
    )
    return 0


def _filters(args: argparse.Namespace) -> dl.DeadLetterFilter:
    return dl.DeadLetterFilter(
        reason=args.reason,
        service=args.service,
        organization_id=args.organization,
        external_subscription_id=args.subscription,
        since=args.since,
        until=args.until,
    )


async def _dead_letters(args: argparse.Namespace, settings: Settings) -> int:
    letters = await dl.read_dead_letters(settings)
    out = _out()
    if args.action == "show":
        letter = dl.find(letters, args.id)
        _print_json({**letter.summary(), "record": letter.body})
        return 0
    chosen = [letter for letter in letters if _filters(args).accepts(letter)]
    if args.action == "requeue":
        if args.ids:
            chosen = [dl.find(letters, ident) for ident in args.ids]
        elif not args.all:
            raise ConfigurationError("name the dead letters to requeue (ids) or pass --all")
        done = await dl.requeue(settings, chosen, again=args.again)
        out.print(f"requeued {len(done.requeued)}: {' '.join(done.requeued) or '-'}")
        if done.skipped:
            out.print(
                f"skipped {len(done.skipped)} requeued before (--again sends them anyway): "
                + " ".join(done.skipped)
            )
        left = sum(
            1 for letter in letters if not letter.requeued and letter.id not in done.requeued
        )
        out.print(f"{left} dead letter(s) left that were never requeued")
        return 0
    left = sum(1 for letter in chosen if not letter.requeued)
    if args.json:
        _print_json({"dead_letters": [x.summary() for x in chosen], "left": left})
        return 0
    table = _table(
        "id",
        "dead-lettered at",
        "service",
        "reason",
        "subscription",
        "transaction",
        "requeued",
    )
    for x in chosen:
        s = x.summary()
        table.add_row(
            x.id,
            str(s["dead_lettered_at"])[:19],
            x.service,
            x.reason,
            s["external_subscription_id"] or "-",
            s["transaction_id"] or "-",
            str(x.requeued) if x.requeued else "-",
        )
    out.print(table)
    out.print(f"{len(chosen)} dead letter(s) match; {left} left (never requeued)")
    return 0


def _scope_filters(args: argparse.Namespace) -> Filters:
    return Filters(args.organization, args.customer, args.subscription)


async def _replay(args: argparse.Namespace, settings: Settings) -> int:
    rows, scratch = await compare(
        settings,
        _scope_filters(args),
        args.since,
        args.until,
        UsageClient(aggregator_urls(os.environ)),
        progress=not (args.json or args.no_progress),
    )
    differ = [r for r in rows if r.differs]
    if args.json:
        _print_json(
            {
                "rows": [r.as_json() for r in rows],
                "differences": len(differ),
                "events": dict(scratch.counts),
            }
        )
        return 1 if differ else 0
    table = _table(
        "subscription",
        "charge",
        "period",
        "compared with",
        "replay units",
        "replay events",
        "recorded units",
        "recorded events",
        "",
    )
    for r in rows if not args.only_differences else differ:
        table.add_row(
            r.external_subscription_id,
            r.charge,
            f"{r.period_start:%Y-%m-%d %H:%M} .. {r.period_end:%Y-%m-%d %H:%M}",
            r.compared_with,
            str(r.replay_units),
            str(r.replay_events),
            "-" if r.recorded_units is None else str(r.recorded_units),
            "-" if r.recorded_events is None else str(r.recorded_events),
            "DIFFERS" if r.differs else "ok",
        )
    out = _out()
    out.print(table)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(scratch.counts.items()))
    out.print(f"events read: {counts or 'none'}")
    out.print(f"{len(rows)} row(s) compared, {len(differ)} differ")
    return 1 if differ else 0


async def _reconcile(args: argparse.Namespace, settings: Settings) -> int:
    results = await reconcile(
        settings,
        _scope_filters(args),
        args.since,
        args.until,
        args.invoice,
        progress=not (args.json or args.no_progress),
    )
    differences = [d for r in results for d in r.differences]
    if args.json:
        _print_json(
            {
                "invoices": [
                    {
                        "invoice": r.invoice.number,
                        "lago_id": r.invoice.invoice_id,
                        "external_subscription_id": r.external_subscription_id,
                        "total_amount_cents": r.invoice.total_amount_cents,
                        "recomputed_total_amount_cents": r.recomputed_total_cents,
                        "differences": [d.as_json() for d in r.differences],
                        "unchecked": r.unchecked,
                    }
                    for r in results
                ],
                "differences": len(differences),
            }
        )
        return 1 if differences else 0
    out = _out()
    table = _table("invoice", "subscription", "period", "total", "recomputed", "")
    for r in results:
        i = r.invoice
        table.add_row(
            i.number,
            r.external_subscription_id,
            f"{i.period_start:%Y-%m-%d} .. {i.period_end:%Y-%m-%d %H:%M}",
            str(i.total_amount_cents),
            str(r.recomputed_total_cents),
            "DIFFERS" if r.differences else "ok",
        )
    out.print(table)
    if differences:
        diff = _table("invoice", "line", "field", "stored", "recomputed")
        for d in differences:
            diff.add_row(d.invoice, d.line, d.field, d.stored, d.recomputed)
        out.print(diff)
    for r in results:
        for note in r.unchecked:
            out.print(f"{r.invoice.number}: not recomputed: {note}")
    out.print(f"{len(results)} invoice(s) recomputed, {len(differences)} difference(s)")
    return 1 if differences else 0
