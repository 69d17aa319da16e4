"""Customer pages over HTTP: search and pages (the same search as the API's search_term),
errors beside their fields with what was typed kept, the external ID editable until a plan
is assigned and refused by the server after, and `meterflow create-user`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import aiohttp

from gateway.service import IngestServer
from meterflow.settings import Settings
from support.console import Operator, call_api, csrf_of, sign_in


async def test_search_and_pages_list_the_same_customers_as_the_api(
    console_server: IngestServer, http: aiohttp.ClientSession, operator_factory: Callable[..., Any]
) -> None:
    operator: Operator = await operator_factory()
    for i in range(25):
        customer = {"external_id": f"ext-{i:02d}", "name": f"Customer {i}"}
        if i % 5 == 0:
            customer |= {"legal_name": f"Fifth {i} GmbH", "email": f"BILLING{i}@Fifth.test"}
        await call_api(
            console_server.url, operator.api_key, "POST", "customers", {"customer": customer}
        )
    await sign_in(http, console_server.url, operator)
    base = f"{console_server.url}/console/customers"

    async with http.get(base) as page:
        html = await page.text()
    assert "25 customers" in html and "Page 1 of 2" in html
    assert html.count('<tr>\n      <td><a href="/console/customers/') == 20
    async with http.get(base, params={"page": "2"}) as page:
        assert (await page.text()).count("<code>ext-") == 5

    for term, expected in (("fifth", 5), ("GMBH", 5), ("billing1", 2), ("ext-2", 5), ("%", 0)):
        async with http.get(base, params={"q": term}) as page:
            shown = set(re.findall(r"<code>(ext-\d+)</code>", await page.text()))
        api = await call_api(
            console_server.url, operator.api_key, "GET", f"customers?search_term={term}"
        )
        assert len(shown) == expected, term
        assert shown == {c["external_id"] for c in api["customers"]}, "one search, two readers"
    async with http.get(base, params={"q": "nobody"}) as page:
        assert "No customer matches" in await page.text()


async def test_errors_name_the_field_and_keep_what_was_typed(
    console_server: IngestServer, http: aiohttp.ClientSession, operator_factory: Callable[..., Any]
) -> None:
    operator: Operator = await operator_factory()
    token = await sign_in(http, console_server.url, operator)
    form = {
        "csrf_token": token,
        "external_id": "typed-id",
        "name": "Typed name",
        "timezone": "Mars/Olympus",
        "country": "F1",
        "metadata.0.value": "no key",
    }
    async with http.post(f"{console_server.url}/console/customers", data=form) as response:
        html = await response.text()
        assert response.status == 422
    assert 'value="Typed name"' in html and 'value="typed-id"' in html
    assert 'id="timezone-error">Not an IANA timezone' in html
    assert 'id="country-error">Two letters' in html
    assert 'id="metadata.0.key-error">Required.' in html
    form |= {"timezone": "Pacific/Chatham", "country": "FR", "metadata.0.key": "segment"}
    async with http.post(f"{console_server.url}/console/customers", data=form) as response:
        assert response.status == 200 and "Typed name" in await response.text()
    form["name"] = "Someone else"
    async with http.post(f"{console_server.url}/console/customers", data=form) as response:
        assert response.status == 422, "adding a customer never overwrites another"
        assert "Already taken" in await response.text()


async def test_the_external_id_changes_until_a_plan_is_assigned(
    console_server: IngestServer, http: aiohttp.ClientSession, operator_factory: Callable[..., Any]
) -> None:
    operator: Operator = await operator_factory()
    token = await sign_in(http, console_server.url, operator)
    form = {"csrf_token": token, "external_id": "first-id", "name": "Renamed Ltd"}
    async with http.post(f"{console_server.url}/console/customers", data=form) as created:
        customer_url = str(created.url)
    async with http.post(customer_url, data=form | {"external_id": "second-id"}) as response:
        assert response.status == 200, "no plan yet: the external ID may change"
    api = await call_api(console_server.url, operator.api_key, "GET", "customers/second-id")
    assert api["customer"]["name"] == "Renamed Ltd"

    metric = await call_api(
        console_server.url,
        operator.api_key,
        "POST",
        "billable_metrics",
        {"billable_metric": {"name": "Calls", "code": "calls", "aggregation_type": "count_agg"}},
    )
    plan = {"name": "Basic", "code": "basic", "interval": "monthly", "amount_cents": 0}
    plan |= {"amount_currency": "EUR", "charges": []}
    await call_api(console_server.url, operator.api_key, "POST", "plans", {"plan": plan})
    async with http.get(f"{customer_url}/subscriptions/new") as page:
        token = csrf_of(await page.text())
    subscription = {"csrf_token": token, "plan_code": "basic", "external_id": "sub-renamed"}
    async with http.post(f"{customer_url}/subscriptions/new", data=subscription) as response:
        assert response.status == 200 and "sub-renamed" in await response.text()
    assert metric["billable_metric"]["code"] == "calls"

    async with http.get(f"{customer_url}/edit") as page:
        html = await page.text()
    assert 'name="external_id" type="text" value="second-id" required readonly' in html
    async with http.post(customer_url, data=form | {"external_id": "third-id"}) as response:
        assert response.status == 422
        assert "Locked: a plan" in await response.text()
    api = await call_api(console_server.url, operator.api_key, "GET", "customers/second-id")
    assert api["customer"]["external_id"] == "second-id", "the server refused the change"
    changed = {"customer": {"external_id": "second-id", "name": "Still upserted"}}
    await call_api(console_server.url, operator.api_key, "POST", "customers", changed)


def test_create_user_takes_the_organization_by_name_and_the_password_from_stdin(
    settings: Settings, console_server: IngestServer
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": settings.dsn,
        "METERFLOW_DB_SCHEMA": settings.db_schema,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "METERFLOW_TOPIC_PREFIX": settings.topics.prefix,
    }
    cli = [sys.executable, "-m", "meterflow.cli"]
    org = subprocess.run(
        [*cli, "create-organization", "--name", "Initech"], env=env, capture_output=True, text=True
    )
    assert org.returncode == 0, org.stderr
    made = subprocess.run(
        [*cli, "create-user", "--organization", "Initech", "--email", "peter@initech.test"],
        env=env,
        capture_output=True,
        text=True,
        input="",
    )
    assert made.returncode == 0, made.stderr
    assert "password: " in made.stdout, "a generated password is printed once"
    piped = subprocess.run(
        [
            *cli,
            "create-user",
            "--organization",
            "Initech",
            "--email",
            "bill@initech.test",
            *["--password-stdin"],
        ],
        env=env,
        capture_output=True,
        text=True,
        input="a long enough secret\n",
    )
    assert piped.returncode == 0 and "password" not in piped.stdout
    again = subprocess.run(
        [*cli, "create-user", "--organization", "Nobody Inc", "--email", "x@y.test"],
        env=env,
        capture_output=True,
        text=True,
        input="",
    )
    assert again.returncode == 1 and "no organization" in again.stderr
