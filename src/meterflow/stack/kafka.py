"""A single-node KRaft Kafka broker run from Maven Central jars with the machine's Java."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from meterflow.errors import StackError
from meterflow.stack.processes import HomePath, read_pid, terminate

log = logging.getLogger(__name__)

# Brokers this process started, by pid: stop() reaps them, so no zombie or
# "subprocess still running" warning is left behind.
_started: dict[int, subprocess.Popen[bytes]] = {}

POM = Path(__file__).resolve().parents[3] / "deploy" / "kafka" / "pom.xml"

_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
"""


@dataclass(frozen=True, slots=True)
class LocalKafka:
    """One broker+controller on loopback, its files under `home` (a git-ignored folder)."""

    home: Path
    port: int
    controller_port: int
    partitions: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    libs = HomePath("libs")
    log_file = HomePath("broker.log")
    pid_file = HomePath("broker.pid")

    def pid(self) -> int | None:
        return read_pid(self.pid_file)

    def install(self) -> None:
        """Resolve the broker's jars with Maven, once; later calls reuse them."""
        marker = self.libs / ".complete"
        if marker.exists():
            return
        if shutil.which("mvn") is None:
            raise StackError("Maven (mvn) is not on PATH: install it (apt-get install maven)")
        self.libs.mkdir(parents=True, exist_ok=True)
        log.info("kafka.install libs=%s", self.libs)
        result = subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={self.libs}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(
                "mvn could not resolve the Kafka jars; check that Maven Central is reachable:\n"
                + (result.stdout + result.stderr)[-3000:]
            )
        marker.touch()

    def configure(self) -> Path:
        """Write the KRaft config and log4j settings; rewritten each start, data kept."""
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.home / "server.properties"
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={data}",
                    f"num.partitions={self.partitions}",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "delete.topic.enable=true",
                    "log.retention.hours=168",
                    "",
                ]
            )
        )
        (self.home / "log4j.properties").write_text(_LOG4J)
        return config

    def format_storage(self, config: Path) -> None:
        """Format the KRaft storage once; a formatted folder is kept as it is."""
        if (self.home / "data" / "meta.properties").exists():
            return
        result = subprocess.run(
            [
                "java",
                "-cp",
                f"{self.libs}/*",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                uuid.uuid4().hex[:22],
                "-c",
                str(config),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"Kafka storage format failed:\n{result.stdout}{result.stderr}")

    def start(self, *, timeout: float = 90.0) -> None:
        """Install, configure, format and start the broker; wait until it accepts clients.

        A broker already running from this folder is reused.
        """
        if self.pid() is not None:
            log.info("kafka.reuse pid=%s bootstrap=%s", self.pid(), self.bootstrap)
            return
        if _port_open(self.port):
            raise StackError(
                f"port {self.port} is taken by another process; stop it or set "
                "METERFLOW_KAFKA_PORT to a free port"
            )
        if shutil.which("java") is None:
            raise StackError(
                "java is not on PATH: install a JDK 17 (apt-get install openjdk-17-jdk)"
            )
        self.install()
        config = self.configure()
        self.format_storage(config)
        log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as out:
            proc = subprocess.Popen(
                [
                    "java",
                    "-Xms256m",
                    "-Xmx1g",
                    "-XX:+UseG1GC",
                    "-Djava.awt.headless=true",
                    f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
                    "-cp",
                    f"{self.libs}/*",
                    "kafka.Kafka",
                    str(config),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        _started[proc.pid] = proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(
                    f"Kafka exited with code {proc.returncode} while starting; read {self.log_file}"
                )
            if _broker_started(self.log_file, log_start) and _port_open(self.port):
                log.info("kafka.started pid=%s bootstrap=%s", proc.pid, self.bootstrap)
                return
            time.sleep(0.25)
        terminate(proc.pid, timeout=10)
        proc.wait()
        raise StackError(f"Kafka did not start within {timeout:.0f}s; read {self.log_file}")

    def stop(self, *, timeout: float = 30.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        graceful = terminate(pid, timeout=timeout)
        if pid in _started:
            _started.pop(pid).wait()
        log.info("kafka.stopped pid=%s graceful=%s", pid, graceful)
        self.pid_file.unlink(missing_ok=True)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _broker_started(log_file: Path, since: int) -> bool:
    """Whether the broker logged its start after byte `since` (the log is appended to)."""
    try:
        with log_file.open("rb") as f:
            f.seek(since)
            return b"Kafka Server started" in f.read()
    except FileNotFoundError:
        return False
