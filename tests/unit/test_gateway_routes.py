"""The API application serves exactly the (method, path) pairs of `gateway_routes.txt`: the
route tables may be written any way, the API the SDKs and the spec see stays the same (a
route added or removed on purpose is added to or removed from that file in the same change)."""

from __future__ import annotations

from pathlib import Path

from gateway.app import create_app
from meterflow.settings import Settings
from web.settings import IngestSettings

EXPECTED = Path(__file__).with_name("gateway_routes.txt")


def served() -> list[str]:
    """`METHOD path` of every route the application serves (HEAD left out: aiohttp adds it
    beside each GET)."""
    app = create_app(Settings.from_env({}), IngestSettings.from_env({}))
    return sorted(
        {
            f"{route.method} {route.resource.canonical}"
            for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"
        }
    )


def test_the_gateway_serves_the_same_routes() -> None:
    expected = EXPECTED.read_text().splitlines()
    actual = served()
    assert [r for r in actual if r not in expected] == [], "served, not in gateway_routes.txt"
    assert [r for r in expected if r not in actual] == [], "in gateway_routes.txt, not served"


def test_every_get_also_answers_head() -> None:
    app = create_app(Settings.from_env({}), IngestSettings.from_env({}))
    pairs = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    assert all(("HEAD", path) in pairs for method, path in pairs if method == "GET")
