"""The `meterflow` command: the local stack (up, down, status), migrations and the services."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from meterflow import status
from meterflow.errors import MeterflowError
from meterflow.logs import configure_logging
from meterflow.services import SERVICES, Service
from meterflow.settings import Settings
from meterflow.stack.local import LocalStack
from meterflow.stack.processes import read_pid, terminate
from meterflow.supervisor import Supervisor

# How long `meterflow up` waits for a service to answer its readiness URL.
READY_TIMEOUT = 180.0


def _run_service(service: Service, settings: Settings) -> int:
    module_name, func_name = service.entry_point.split(":")
    module = __import__(module_name, fromlist=[func_name])
    result: int = getattr(module, func_name)(settings)
    return result


def cmd_up(settings: Settings) -> int:
    up_pid_file = settings.state_dir / "up.pid"
    running = read_pid(up_pid_file)
    if running is not None:
        print(
            f"meterflow is already up (pid {running}); `meterflow status` shows where it "
            "listens, `meterflow down` stops it."
        )
        return 0
    stack = LocalStack.from_settings(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    up_pid_file.write_text(f"{os.getpid()}\n")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    supervisor = Supervisor(SERVICES, settings.state_dir / "up.json")
    exit_code = 0
    try:
        stack.start()
        supervisor.start_all()
        if supervisor.wait_ready(stop, READY_TIMEOUT):
            _print_endpoints(settings)
            exit_code = supervisor.run(stop)
        elif not stop.is_set():
            exit_code = 1
    finally:
        print("meterflow: stopping", file=sys.stderr)
        supervisor.stop_all(terminate)
        stack.stop()
        up_pid_file.unlink(missing_ok=True)
        print("meterflow: stopped", file=sys.stderr)
    return exit_code


def _console_url() -> str:
    from web.settings import IngestSettings

    return f"http://127.0.0.1:{IngestSettings.from_env().port}/console/"


def _print_endpoints(settings: Settings) -> None:
    kafka = settings.bootstrap_servers
    print("meterflow is up (Ctrl-C or `meterflow down` stops it)")
    print(f"  kafka      {kafka}{'' if settings.kafka_bootstrap else ' (embedded)'}")
    print(f"  postgres   {settings.dsn}{'' if settings.database_url else ' (embedded)'}")
    t = settings.topics
    print(f"  topics     {t.events} {t.catalog} {t.periods_closed} {t.dead_letter}")
    for service in SERVICES:
        print(f"  {service.name:<10} {service.endpoints().description}")
    print(f"console      {_console_url()}  (users: meterflow create-user)")
    print("An API key for Lago's clients: meterflow create-organization --name <name>")
    sys.stdout.flush()


def cmd_down(settings: Settings) -> int:
    up_pid = read_pid(settings.state_dir / "up.pid")
    if up_pid is not None:
        print(f"meterflow: stopping `meterflow up` (pid {up_pid})")
        terminate(up_pid, timeout=90)
    stack = LocalStack.from_settings(settings)
    leftovers = {name: pid for name, pid in stack.running().items() if pid is not None}
    if leftovers:
        print("meterflow: stopping " + ", ".join(f"{n} (pid {p})" for n, p in leftovers.items()))
    stack.stop()
    print("meterflow is down")
    return 0


def cmd_status(settings: Settings, as_json: bool) -> int:
    found = status.gather(settings)
    print(json.dumps(found, indent=2) if as_json else status.render(found))
    return 0


def cmd_migrate(settings: Settings) -> int:
    applied = asyncio.run(LocalStack.from_settings(settings).prepare())
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none needed'}")
    print(f"topics ready on {settings.bootstrap_servers} (prefix {settings.topics.prefix!r})")
    return 0


def cmd_create_organization(settings: Settings, name: str, timezone: str) -> int:
    from gateway.organizations import create_organization

    org, key = asyncio.run(create_organization(settings, name, timezone))
    print(f"organization {org.id} ({org.name}, timezone {org.timezone})")
    print(f"api key: {key}")
    print("The key is shown only this once; meterflow stores only its SHA-256 digest.")
    return 0


def cmd_create_user(settings: Settings, organization: str, email: str, from_stdin: bool) -> int:
    import secrets

    from console.users import create_user

    password = sys.stdin.readline().rstrip("\r\n") if from_stdin else secrets.token_urlsafe(15)
    user = asyncio.run(create_user(settings, organization, email, password))
    print(f"console user {user.email} of organization {user.organization_id}")
    if not from_stdin:
        print(f"password: {password}")
        print("The password is shown only this once; meterflow stores only its argon2 hash.")
    return 0


def cmd_webhook_secret(settings: Settings, organization: str) -> int:
    from webhooks.signing import organization_secret

    print(asyncio.run(organization_secret(settings, organization)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meterflow", description=__doc__)
    parser.add_argument("--log-level", default=os.environ.get("METERFLOW_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run Kafka, Postgres and every service in the foreground")
    sub.add_parser("down", help="stop what `meterflow up` or the tests left running")
    status_cmd = sub.add_parser(
        "status", help="Kafka, Postgres and the services of `meterflow up`: pid, ready, restarts"
    )
    status_cmd.add_argument("--json", action="store_true", help="print JSON for machines")
    sub.add_parser("migrate", help="apply the database migrations and create the Kafka topics")
    create_org = sub.add_parser(
        "create-organization", help="create an organization and print its API key"
    )
    create_org.add_argument("--name", required=True)
    create_org.add_argument("--timezone", default="UTC", help="IANA name, default UTC")
    create_user = sub.add_parser("create-user", help="create a console user of an organization")
    create_user.add_argument("--organization", required=True, help="the organization's id or name")
    create_user.add_argument("--email", required=True)
    create_user.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin's first line"
    )
    secret = sub.add_parser("webhook-secret", help="print an organization's webhook HMAC secret")
    secret.add_argument("--organization", required=True, help="the organization's id")
    for service in SERVICES:
        sub.add_parser(service.name, help=f"run the {service.name} service alone")
    from operations.cli import add_commands  # the operator tools: lag, dead-letters, ...

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    commands = {"up": cmd_up, "down": cmd_down, "migrate": cmd_migrate}
    try:
        settings = Settings.from_env()
        if args.command == "status":
            return cmd_status(settings, args.json)
        if args.command == "create-organization":
            return cmd_create_organization(settings, args.name, args.timezone)
        if args.command == "create-user":
            return cmd_create_user(settings, args.organization, args.email, args.password_stdin)
        if args.command == "webhook-secret":
            return cmd_webhook_secret(settings, args.organization)
        if args.command in commands:
            return commands[args.command](settings)
        from operations import cli as operations

        if args.command in operations.COMMANDS:
            return operations.run(args, settings)
        service = next(s for s in SERVICES if s.name == args.command)
        return _run_service(service, settings)
    except MeterflowError as exc:
        print(f"meterflow: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
