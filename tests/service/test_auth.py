"""Supabase access tokens: HS256 with the legacy secret, ES256/RS256 with the issuer's
signing keys (a JWK Set served at the HTTP edge), and the service's own signed links."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service import Settings, create_app
from tests.clock import FakeClock
from tests.service.conftest import SECRET, in_process

pytestmark = pytest.mark.anyio

SUPABASE = "https://project.supabase.test"
ISSUER = f"{SUPABASE}/auth/v1"
JWKS_URL = f"{ISSUER}/.well-known/jwks.json"


class Issuer:
    """A Supabase project's auth server as far as tokens go: signing keys that rotate, and
    its JWK Set at the HTTP edge (fetches counted; it can be taken down)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.private: dict[str, tuple[Any, str]] = {}
        self.fetches = 0
        self.down = False
        self.max_age = 600

    def add_key(self, alg: str) -> str:
        kid = uuid.uuid4().hex[:12]
        if alg == "ES256":
            key: Any = ec.generate_private_key(ec.SECP256R1())
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private[kid] = (key, alg)
        return kid

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, (key, alg) in self.private.items():
            algorithm = jwt.get_algorithm_by_name(alg)
            jwk = json.loads(algorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": keys}

    def token(self, kid: str, **claims: Any) -> str:
        key, alg = self.private[kid]
        now = int(self.clock())
        body = {"sub": "user-1", "aud": "authenticated", "iss": ISSUER, "role": "authenticated",
                "iat": now, "exp": now + 3600, **claims}
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})

    def public_pem(self, kid: str) -> bytes:
        key, _ = self.private[kid]
        return key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == JWKS_URL, f"unexpected request to {request.url}"
        self.fetches += 1
        if self.down:
            return httpx.Response(503, text="upstream unavailable")
        return httpx.Response(200, json=self.jwks(),
                              headers={"Cache-Control": f"public, max-age={self.max_age}"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(clock) -> Issuer:
    return Issuer(clock)


@pytest.fixture
def auth_env(service_env) -> dict[str, str]:
    """A deployment on a Supabase project with signing keys only (no legacy secret)."""
    env = {k: v for k, v in service_env.items() if k != "AUTH_JWT_SECRET"}
    return {**env, "SUPABASE_URL": SUPABASE}


async def serve(env, issuer, clock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings.from_env(env), transport=httpx.MockTransport(issuer.handle),
                     clock=clock)
    async with in_process(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                     timeout=60) as client:
            yield client


@pytest.fixture
async def api(auth_env, issuer, clock) -> AsyncIterator[httpx.AsyncClient]:
    async for client in serve(auth_env, issuer, clock):
        yield client


async def test_es256_and_rs256_tokens_of_the_key_set_are_accepted(api, issuer):
    """Tokens signed with either kind of Supabase signing key name their user; one fetch
    of the key set serves both (they are in the same set)."""
    es, rs = issuer.add_key("ES256"), issuer.add_key("RS256")
    for kid, user in ((es, "user-es"), (rs, "user-rs")):
        answer = await api.get("/v1/account", headers=bearer(issuer.token(kid, sub=user)))
        assert answer.status_code == 200, answer.text
        assert answer.json()["user_id"] == user
    assert issuer.fetches == 1


async def test_an_es256_token_generates_a_thumbnail_end_to_end(api, issuer):
    """A token of a Supabase project with asymmetric keys creates a thumbnail."""
    token = issuer.token(issuer.add_key("ES256"), sub="0b5e0c4e-6f1a-4c55-9b8b-3d2f5e6a7b8c")
    done = await api.post("/v1/thumbnails", json={"title": "Signed by the issuer"},
                          headers=bearer(token))
    assert done.status_code == 200, done.text
    assert done.json()["operation"]["status"] == "succeeded"
    (thumbnail,) = done.json()["operation"]["result"]["thumbnails"]
    assert (await api.get(thumbnail["image_url"])).status_code == 200


async def test_rotation_needs_no_restart(api, issuer, clock):
    """A new kid is fetched when first seen; a removed one still works while the cached
    set is fresh and is refused once it has expired and been fetched again."""
    old = issuer.add_key("ES256")
    old_token = issuer.token(old, exp=int(clock()) + 7200)
    assert (await api.get("/v1/account", headers=bearer(old_token))).status_code == 200
    clock.advance(31)
    new = issuer.add_key("ES256")
    assert (await api.get("/v1/account", headers=bearer(issuer.token(new)))).status_code == 200
    assert issuer.fetches == 2
    del issuer.private[old]
    assert (await api.get("/v1/account", headers=bearer(old_token))).status_code == 200
    clock.advance(600)
    refused = await api.get("/v1/account", headers=bearer(old_token))
    assert refused.status_code == 401
    assert refused.json()["code"] == "UNAUTHORIZED"
    assert issuer.fetches == 3
    assert (await api.get("/v1/account", headers=bearer(issuer.token(new)))).status_code == 200


async def test_a_flood_of_unknown_kids_costs_one_fetch(api, issuer, clock):
    """200 tokens naming random kids are all refused, and the key set is fetched once for
    all of them (at most once per 30 s), not once each."""
    kid = issuer.add_key("ES256")
    assert (await api.get("/v1/account", headers=bearer(issuer.token(kid)))).status_code == 200
    clock.advance(31)
    key, _ = issuer.private[kid]
    forged = [
        jwt.encode({"sub": "user-1", "aud": "authenticated", "iss": ISSUER,
                    "exp": int(issuer.clock()) + 60}, key, algorithm="ES256",
                   headers={"kid": uuid.uuid4().hex})
        for _ in range(200)
    ]
    answers = [await api.get("/v1/account", headers=bearer(t)) for t in forged]
    assert {a.status_code for a in answers} == {401}
    assert issuer.fetches == 2


async def test_the_key_set_down_is_503_for_unknown_keys_and_cached_keys_go_on(
    api, issuer, clock
):
    """The key set unreachable: a token whose key is cached is served (even past the
    cache's age); one whose key is not is 503 AUTH_UNAVAILABLE with Retry-After; once the
    set is back, that token is accepted."""
    known = issuer.add_key("ES256")
    assert (await api.get("/v1/account", headers=bearer(issuer.token(known)))).status_code == 200
    issuer.down = True
    fresh = issuer.add_key("RS256")
    clock.advance(700)
    assert (await api.get("/v1/account", headers=bearer(issuer.token(known)))).status_code == 200
    unavailable = await api.get("/v1/account", headers=bearer(issuer.token(fresh)))
    assert unavailable.status_code == 503
    assert unavailable.json()["code"] == "AUTH_UNAVAILABLE"
    assert unavailable.json()["retryable"] is True
    assert int(unavailable.headers["Retry-After"]) >= 1
    issuer.down = False
    clock.advance(31)
    back = await api.get("/v1/account", headers=bearer(issuer.token(fresh)))
    assert back.status_code == 200


async def test_algorithm_confusion_and_unsigned_tokens_are_refused(api, issuer):
    """An HS256 token "signed" with the issuer's public key, `alg: none`, and an ES256
    header over an RS256 key are all 401 (no legacy secret is configured)."""
    rs = issuer.add_key("RS256")
    assert (await api.get("/v1/account", headers=bearer(issuer.token(rs)))).status_code == 200
    claims = {"sub": "user-1", "aud": "authenticated", "iss": ISSUER,
              "exp": int(issuer.clock()) + 60}
    hs_with_public_key = _hs256(claims, issuer.public_pem(rs), kid=rs)
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": rs})
    es = issuer.add_key("ES256")
    es_key, _ = issuer.private[es]
    mismatched = jwt.encode(claims, es_key, algorithm="ES256", headers={"kid": rs})
    for token in (hs_with_public_key, unsigned, mismatched):
        answer = await api.get("/v1/account", headers=bearer(token))
        assert answer.status_code == 401, token
        assert answer.json()["code"] == "UNAUTHORIZED"


def _hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """An HS256 token keyed with arbitrary bytes (PyJWT refuses PEM keys for HMAC, as it
    should; an attacker would not), made by hand."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({"aud": "https://www.viewbait.app/api/mcp"}, "the token is not valid"),
        ({"iss": "https://other.supabase.test/auth/v1"}, "the token is not valid"),
        ({"exp": 1_000_000_000}, "the token has expired"),
        ({"nbf": 2_000_000_000}, "the token is not valid yet"),
        ({"sub": ""}, "the token names no user"),
    ],
)
async def test_wrong_audience_issuer_or_times_are_refused(api, issuer, claims, error):
    """aud must be one of AUTH_AUDIENCES, iss must be AUTH_ISSUER, exp and nbf hold."""
    token = issuer.token(issuer.add_key("ES256"), **claims)
    answer = await api.get("/v1/account", headers=bearer(token))
    assert answer.status_code == 401
    assert answer.json()["error"] == error


async def test_other_audiences_can_be_accepted(auth_env, issuer, clock):
    """AUTH_AUDIENCES lists more than one: ViewBait's MCP tokens are accepted too."""
    env = {**auth_env, "AUTH_AUDIENCES": "authenticated,https://www.viewbait.app/api/mcp"}
    async for api in serve(env, issuer, clock):
        token = issuer.token(issuer.add_key("ES256"), aud="https://www.viewbait.app/api/mcp")
        assert (await api.get("/v1/account", headers=bearer(token))).status_code == 200


async def test_legacy_secret_and_signing_keys_work_side_by_side(auth_env, issuer, clock):
    """A project mid-migration: HS256 tokens of the legacy secret and ES256 tokens of
    the key set are both accepted."""
    env = {**auth_env, "AUTH_JWT_SECRET": SECRET}
    async for api in serve(env, issuer, clock):
        es = issuer.token(issuer.add_key("ES256"))
        hs = jwt.encode({"sub": "user-1", "aud": "authenticated", "iss": ISSUER,
                         "exp": int(clock()) + 60}, SECRET, algorithm="HS256")
        for token in (es, hs):
            assert (await api.get("/v1/account", headers=bearer(token))).status_code == 200


async def test_a_signed_events_link_is_not_a_bearer_token(api, issuer):
    """The token of `links.events` opens that operation's events, and nothing else: as a
    bearer token it is 401 (also on the operation itself)."""
    user = bearer(issuer.token(issuer.add_key("ES256")))
    accepted = await api.post("/v1/thumbnails", json={"title": "t"},
                              headers={**user, "Prefer": "respond-async"})
    assert accepted.status_code == 202
    events = accepted.json()["links"]["events"]
    link_token = httpx.URL(events).params["token"]
    async with api.stream("GET", events) as stream:
        assert stream.status_code == 200
    for path in ("/v1/account", accepted.json()["links"]["self"]):
        answer = await api.get(path, headers=bearer(link_token))
        assert answer.status_code == 401


def test_the_token_command_mints_only_with_a_secret(auth_env, monkeypatch, capsys):
    """`python -m service token` refuses when only a key set is configured (tokens come
    from the issuer) and mints HS256 tokens with AUTH_JWT_SECRET."""
    from service.__main__ import main

    for name, value in auth_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AUTH_JWT_SECRET", raising=False)
    assert main(["token", "user-9"]) == 2
    assert "AUTH_JWT_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("AUTH_JWT_SECRET", SECRET)
    assert main(["token", "user-9"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="authenticated")
    assert claims["sub"] == "user-9"
    assert claims["iss"] == ISSUER


async def test_a_key_the_service_cannot_use_is_skipped(api, issuer, clock):
    """A JWK Set holding keys PyJWT cannot use (an X25519 key, an EC key without its
    coordinates) beside a good one: the good one's tokens are accepted."""
    good = issuer.add_key("ES256")
    jwks = issuer.jwks

    def with_odd_keys() -> dict[str, Any]:
        keys = jwks()["keys"]
        return {"keys": [
            {"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": "AAAA"},
            {"kty": "EC", "crv": "P-256", "kid": "no-coordinates", "use": "sig"},
            {"kty": "RSA", "kid": "bad-exponent", "n": "AA", "e": "!!"},
            *keys,
        ]}

    issuer.jwks = with_odd_keys  # type: ignore[method-assign]
    answer = await api.get("/v1/account", headers=bearer(issuer.token(good)))
    assert answer.status_code == 200, answer.text


def test_a_signed_link_is_refused_even_where_its_secret_and_audience_would_pass() -> None:
    """Misconfigured so that the links' secret and audience are also the bearer's: the
    link's purpose still refuses it as a bearer token."""
    import asyncio

    from service.web import Authenticator
    from service.web._auth import EVENTS_AUDIENCE

    auth = Authenticator(hs_secret=SECRET, signing_secret=SECRET,
                         audiences=["authenticated", EVENTS_AUDIENCE])
    link = auth.issue_events_token("user-1", "op-1")
    with pytest.raises(Exception, match="a signed link is not a bearer token"):
        asyncio.run(auth.verify_user_token(link))


async def test_a_token_checked_before_is_still_refused_once_it_expires() -> None:
    """A verified token is not verified again, but its `exp` is checked on every use: the
    service's clock passing it refuses the token."""
    from service._errors import Unauthorized
    from service.web import Authenticator

    clock = FakeClock()
    auth = Authenticator(hs_secret=SECRET, signing_secret="links", clock=clock)
    token = auth.issue_user_token("user-1", ttl_s=60)
    assert await auth.verify_user_token(token) == "user-1"
    assert await auth.verify_user_token(token) == "user-1"
    clock.advance(120)
    with pytest.raises(Unauthorized, match="expired"):
        await auth.verify_user_token(token)


async def test_a_link_checked_as_a_link_is_still_not_a_bearer_token() -> None:
    """A signed events link accepted on its events URL, then sent as a bearer token under
    the same secrets and audiences: still refused (what it was checked with is part of
    what is remembered)."""
    from starlette.requests import Request

    from service._errors import Unauthorized
    from service.web import Authenticator
    from service.web._auth import EVENTS_AUDIENCE

    auth = Authenticator(hs_secret=SECRET, signing_secret=SECRET,
                         audiences=["authenticated", EVENTS_AUDIENCE])
    link = auth.issue_events_token("user-1", "op-1")
    request = Request({"type": "http", "headers": [],
                       "query_string": f"token={link}".encode()})
    assert (await auth.user_or_events_token(request, "op-1")).user_id == "user-1"
    with pytest.raises(Unauthorized, match="a signed link is not a bearer token"):
        await auth.verify_user_token(link)
