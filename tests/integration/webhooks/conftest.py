"""Fixtures of the webhook tests: the ingest API (its fixtures re-used), and the webhook
worker run in-process with quick retries."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from integration.ingest.conftest import call, make_tenant, server, tenant
from meterflow.settings import Settings
from webhooks.settings import WebhookSettings
from webhooks.worker import WebhookWorker

__all__ = ["call", "make_tenant", "run_worker", "server", "tenant"]

QUICK = WebhookSettings(
    metrics_port=0, timeout=2.0, poll_interval=0.05, backoff_initial=0.05, backoff_max=0.5
)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, config: WebhookSettings) -> AsyncIterator[Any]:
    worker = WebhookWorker(settings, config)
    await worker.start()
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop.set()
        await task
        await worker.close()


@pytest.fixture
def run_worker(settings: Settings) -> Callable[..., Any]:
    """`async with run_worker(**overrides):` a webhook worker with quick retries."""

    def start(**overrides: Any) -> contextlib.AbstractAsyncContextManager[Any]:
        return running_worker(settings, replace(QUICK, **overrides))

    return start


async def eventually(check: Callable[[], bool], *, timeout: float = 30.0, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
