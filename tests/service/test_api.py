"""Idempotency, authorization and bad input, in process on both databases."""

from __future__ import annotations

import json

import jwt
import pytest
import sqlalchemy as sa

from checkpoints import create_engine
from tests.service.conftest import SECRET, auth, token

pytestmark = pytest.mark.anyio

GOOD = {"title": "Idempotent"}


async def count_rows(db_url: str) -> dict[str, int]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            return {
                table: int(await conn.scalar(sa.text(f"SELECT count(*) FROM {table}")))
                for table in ("operations", "operation_events", "credit_ledger", "thumbnails")
            }
    finally:
        await engine.dispose()


async def test_the_same_idempotency_key_twice_gives_one_operation(client, db_url):
    """Same key and body → the same operation, run once, charged once."""
    headers = {**auth(), "Idempotency-Key": "abc-1", "Prefer": "respond-async"}
    first = await client.post("/v1/thumbnails", json=GOOD, headers=headers)
    assert first.status_code == 202
    second = await client.post("/v1/thumbnails", json=GOOD, headers=headers)
    assert second.status_code == 202
    assert first.json()["operation_id"] == second.json()["operation_id"]
    done = await client.post("/v1/thumbnails", json=GOOD, headers={**auth(),
                             "Idempotency-Key": "abc-1"})
    assert done.status_code == 200
    assert done.json()["operation"]["id"] == first.json()["operation_id"]
    rows = await count_rows(db_url)
    assert rows["operations"] == 1
    assert rows["thumbnails"] == 1
    account = (await client.get("/v1/account", headers=auth())).json()
    assert account["credits_remaining"] == 9


async def test_the_same_key_with_another_body_is_refused(client, db_url):
    """Same key, different body → 422 IDEMPOTENCY_KEY_REUSED, nothing new written."""
    headers = {**auth(), "Idempotency-Key": "abc-2", "Prefer": "respond-async"}
    assert (await client.post("/v1/thumbnails", json=GOOD, headers=headers)).status_code == 202
    before = await count_rows(db_url)
    again = await client.post("/v1/thumbnails", json={"title": "Other"}, headers=headers)
    assert again.status_code == 422
    assert again.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert (await count_rows(db_url))["operations"] == before["operations"]


async def test_another_users_operation_is_not_found_anywhere(client):
    """Every operation endpoint answers 404 for someone else's operation."""
    created = await client.post("/v1/thumbnails", json=GOOD,
                                headers={**auth("owner"), "Prefer": "respond-async"})
    op_id = created.json()["operation_id"]
    events_url = created.json()["links"]["events"]
    other = auth("intruder")
    for method, path in (("GET", f"/v1/operations/{op_id}"),
                         ("GET", f"/v1/operations/{op_id}/events"),
                         ("POST", f"/v1/operations/{op_id}/resume"),
                         ("POST", f"/v1/operations/{op_id}/cancel")):
        response = await client.request(method, path, headers=other)
        assert response.status_code == 404, (method, path)
        assert response.json()["code"] == "NOT_FOUND"
    # The events token is scoped to its operation: useless on another one.
    token_only = events_url.split("token=")[1]
    other_op = await client.post("/v1/thumbnails", json={"title": "x"},
                                 headers={**auth("intruder"), "Prefer": "respond-async"})
    response = await client.get(
        f"/v1/operations/{other_op.json()['operation_id']}/events?token={token_only}"
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": f"Bearer {token('user-1', ttl_s=-10)}"},
        {"Authorization": "Bearer " + jwt.encode(
            {"sub": "u", "aud": "authenticated", "exp": 4102444800}, "w" * 40,
            algorithm="HS256")},
        {"Authorization": "Bearer " + jwt.encode(
            {"sub": "u", "aud": "someone-else", "exp": 4102444800}, SECRET,
            algorithm="HS256")},
    ],
    ids=["missing", "garbage", "basic", "expired", "wrong-secret", "wrong-audience"],
)
async def test_bad_expired_or_missing_tokens_are_401(client, headers):
    """Every authenticated endpoint refuses the request with 401 UNAUTHORIZED."""
    for method, path in (("POST", "/v1/thumbnails"), ("GET", "/v1/account"),
                         ("GET", "/v1/operations/x"), ("GET", "/v1/operations/x/events")):
        response = await client.request(method, path, headers=headers, json=GOOD)
        assert response.status_code == 401, (method, path)
        assert response.json()["code"] == "UNAUTHORIZED"


BAD_BODIES = [
    ("wrong-type-title", json.dumps({"title": 5}), 400, "VALIDATION_ERROR"),
    ("missing-title", json.dumps({"thumbnail_text": "x"}), 400, "VALIDATION_ERROR"),
    ("blank-title", json.dumps({"title": "   "}), 400, "VALIDATION_ERROR"),
    ("variations-0", json.dumps({"title": "t", "variations": 0}), 400, "VALIDATION_ERROR"),
    ("variations-5", json.dumps({"title": "t", "variations": 5}), 400, "VALIDATION_ERROR"),
    ("variations-string", json.dumps({"title": "t", "variations": "2"}), 400,
     "VALIDATION_ERROR"),
    ("resolution-8K", json.dumps({"title": "t", "resolution": "8K"}), 400, "VALIDATION_ERROR"),
    ("ratio-7:3", json.dumps({"title": "t", "aspect_ratio": "7:3"}), 400, "VALIDATION_ERROR"),
    ("title-10000", json.dumps({"title": "x" * 10_000}), 400, "VALIDATION_ERROR"),
    ("custom-style-4001", json.dumps({"title": "t", "custom_style": "x" * 4001}), 400,
     "VALIDATION_ERROR"),
    ("nine-references", json.dumps({"title": "t", "reference_images":
                                    ["https://example.com/a.png"] * 9}), 400,
     "VALIDATION_ERROR"),
    ("reference-not-url", json.dumps({"title": "t", "reference_images": ["file:///etc"]}), 400,
     "VALIDATION_ERROR"),
    ("reference-loopback", json.dumps({"title": "t", "reference_images":
                                       ["http://127.0.0.1/a.png"]}), 400, "VALIDATION_ERROR"),
    ("reference-metadata", json.dumps({"title": "t", "reference_images":
                                       ["http://169.254.169.254/latest"]}), 400,
     "VALIDATION_ERROR"),
    ("unknown-field", json.dumps({"title": "t", "colour": "red"}), 400, "VALIDATION_ERROR"),
    ("not-json", "title=hello", 400, "VALIDATION_ERROR"),
    ("json-array", "[1, 2]", 400, "VALIDATION_ERROR"),
    ("empty", "", 400, "VALIDATION_ERROR"),
    ("huge", json.dumps({"title": "t", "custom_style": "x" * (15 * 1024 * 1024)}), 413,
     "PAYLOAD_TOO_LARGE"),
    ("tier-2K", json.dumps({"title": "t", "resolution": "2K"}), 403, "TIER_LIMIT"),
    ("tier-variations", json.dumps({"title": "t", "variations": 2}), 403, "TIER_LIMIT"),
    ("tier-ratio", json.dumps({"title": "t", "aspect_ratio": "1:1"}), 403, "TIER_LIMIT"),
]


@pytest.mark.parametrize(("body", "status", "code"), [b[1:] for b in BAD_BODIES],
                         ids=[b[0] for b in BAD_BODIES])
async def test_bad_input_gets_a_clear_4xx_and_writes_nothing(client, db_url, body, status,
                                                              code):
    """Malformed, oversized or not-allowed bodies: the right status and code, no rows."""
    response = await client.post(
        "/v1/thumbnails", content=body,
        headers={**auth(), "Content-Type": "application/json", "Idempotency-Key": "k"},
    )
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert response.json()["retryable"] is False
    assert response.headers["RateLimit-Policy"] == '"generate";q=20;w=60'
    assert await count_rows(db_url) == {"operations": 0, "operation_events": 0,
                                        "credit_ledger": 0, "thumbnails": 0}


async def test_a_generation_the_balance_cannot_cover_is_402(client, db_url):
    """With too few credits: 402 INSUFFICIENT_CREDITS before anything is written."""
    from service.accounts import Accounts

    engine = create_engine(db_url)
    try:
        await Accounts(engine).set("poor", tier="pro", credits=3)
    finally:
        await engine.dispose()
    response = await client.post("/v1/thumbnails", json={"title": "t", "resolution": "4K"},
                                 headers=auth("poor"))
    assert response.status_code == 402
    assert response.json()["code"] == "INSUFFICIENT_CREDITS"
    assert (await count_rows(db_url))["operations"] == 0


async def test_an_overlong_idempotency_key_is_refused(client):
    """Idempotency-Key is at most 255 characters."""
    response = await client.post("/v1/thumbnails", json=GOOD,
                                 headers={**auth(), "Idempotency-Key": "k" * 256})
    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"


async def test_a_non_ascii_event_cursor_is_a_400(client):
    """Last-Event-ID must be ASCII digits ("²" is a digit to Python, not to us)."""
    created = await client.post("/v1/thumbnails", json=GOOD,
                                headers={**auth(), "Prefer": "respond-async"})
    op_id = created.json()["operation_id"]
    response = await client.get(f"/v1/operations/{op_id}/events?last_event_id=²",
                                headers=auth())
    assert response.status_code == 400
