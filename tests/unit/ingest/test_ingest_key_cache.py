"""The API-key cache: remembers a checked key for its time, forgets an organization that
changed, and can be turned off."""

from __future__ import annotations

import time
import uuid

import pytest

from web.context import Organization
from web.key_cache import KeyCache

ACME = Organization(id=uuid.uuid4(), name="Acme", timezone="UTC")
GLOBEX = Organization(id=uuid.uuid4(), name="Globex", timezone="Asia/Tokyo")


def test_a_key_is_remembered_until_its_time_is_up(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = KeyCache(10)
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now)
    cache.put(b"k1", ACME)
    assert cache.get(b"k1") is ACME
    assert cache.get(b"k2") is None
    monkeypatch.setattr(time, "monotonic", lambda: now + 10.5)
    assert cache.get(b"k1") is None


def test_a_changed_organization_is_asked_for_again() -> None:
    cache = KeyCache(10)
    cache.put(b"k1", ACME)
    cache.put(b"k2", GLOBEX)
    cache.forget(ACME.id)
    assert cache.get(b"k1") is None
    assert cache.get(b"k2") is GLOBEX


def test_zero_seconds_turns_it_off() -> None:
    cache = KeyCache(0)
    cache.put(b"k1", ACME)
    assert cache.get(b"k1") is None
