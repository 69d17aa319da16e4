"""A lean HTTP/1.1 load generator for batch endpoints: keep-alive connections in client
processes of their own, each request a pre-built body with fresh transaction ids (and timestamps).

The client has to cost less than the servers it measures, on a machine they share: a
general-purpose client (aiohttp's) spent about as much CPU per request as the server, and
building each body as Python dicts more than that. Here a request is one bytes template
with the request's tag and serial substituted (two C calls), written to a socket; an answer
is read with a `Content-Length` and its status checked, nothing else parsed. Each client process
reports its own CPU time, so a benchmark can tell whether the clients were the limit.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

TAG = b"~RUN~"  # where a request's body template takes its unique tag
# Where it takes three digits of its own (the request's serial modulo 1,000), e.g. in its
# events' timestamps, so that a server cannot serve them from a memo of the last request's.
SERIAL = b"~NNN~"


@dataclass(slots=True)
class ClientResult:
    """What one client process saw: accepted requests, latencies, refusals and its CPU."""

    accepted: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._need = -1  # bytes the answer has in all once its headers are read
        self._status = 0
        self._body_at = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc or ConnectionError("the server closed"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._need < 0:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).lower()
            self._status = int(head[9:12])
            at = head.find(b"content-length:")
            if at < 0:
                raise ConnectionError("an answer without Content-Length")
            line_end = head.find(b"\r\n", at)
            length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
            self._body_at = end + 4
            self._need = self._body_at + length
        if len(self._buffer) >= self._need and self._answer is not None:
            body = bytes(self._buffer[self._body_at : self._need])
            del self._buffer[: self._need]
            self._need = -1
            self._answer.set_result((self._status, body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self._answer


def _request_head(url: str, api_key: str, length: int) -> bytes:
    parts = urlsplit(url)
    return (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def _clients(
    url: str, api_key: str, template: bytes, tag: str, clients: int, until: float
) -> ClientResult:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"{url}: the load needs a host and a port")
    host, port = parts.hostname, parts.port
    loop = asyncio.get_running_loop()
    result = ClientResult()

    async def client(index: int) -> None:
        _, conn = await loop.create_connection(_Connection, host, port)
        n = 0
        while time.monotonic() < until:
            # Same length for every request: the tag is fixed-width.
            body = template.replace(TAG, f"{tag}{index:03d}{n:09d}".encode()).replace(
                SERIAL, f"{(n * 7 + index) % 1000:03d}".encode()
            )
            n += 1
            started = time.perf_counter()
            status, answer = await conn.request(_request_head(url, api_key, len(body)) + body)
            result.latencies.append(time.perf_counter() - started)
            if status == 200:
                result.accepted += 1
            else:
                result.errors.append(f"{status}: {answer[:200]!r}")
        assert conn.transport is not None
        conn.transport.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return result


def _process(
    url: str,
    api_key: str,
    template: bytes,
    tag: str,
    clients: int,
    start: float,
    until: float,
    out: multiprocessing.SimpleQueue[ClientResult],
) -> None:
    time.sleep(max(0.0, start - time.monotonic()))
    result = asyncio.run(_clients(url, api_key, template, tag, clients, until))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.cpu_seconds = usage.ru_utime + usage.ru_stime
    out.put(result)


def run_load(
    url: str,
    api_key: str,
    template: bytes,
    *,
    tag: str,
    clients: int,
    processes: int,
    seconds: float,
) -> tuple[list[ClientResult], float]:
    """`clients` connections spread over `processes` client processes post the template for
    `seconds`, each request with `tag` + a serial in place of `TAG` and three digits of its
    own in place of `SERIAL`; returns each process's
    result and the wall time from the common start to the last answer."""
    context = multiprocessing.get_context("fork")
    out: multiprocessing.SimpleQueue[ClientResult] = context.SimpleQueue()
    start = time.monotonic() + 0.3  # every process forked and ready before the clock starts
    until = start + seconds
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    workers = [
        context.Process(
            target=_process,
            args=(url, api_key, template, f"{tag}{i:02d}", share, start, until, out),
        )
        for i, share in enumerate(shares)
        if share
    ]
    for worker in workers:
        worker.start()
    results = [out.get() for _ in workers]
    elapsed = time.monotonic() - start
    for worker in workers:
        worker.join()
    return results, elapsed
