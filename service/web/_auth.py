"""Who is calling: Supabase access tokens, and the short-lived links the service signs.

User tokens are Supabase access tokens (`sub` = user id, `exp`, `aud`, `iss`), verified by
the way their header's `alg` names:
- `ES256` / `RS256`: the issuer's public key with the header's `kid`, from its JWK Set
  (`AUTH_JWKS_URL`, see `_jwks`);
- `HS256`: the shared secret (`AUTH_JWT_SECRET`, Supabase's legacy secret; in dev mode a
  secret generated in DATA_DIR).
Anything else — `none`, an algorithm with no configured key, an HS256 token when only a
key set is configured (the algorithm-confusion attack) — is refused (401).

Links the service signs itself (`links.events?token=…`) use their own secret
(`SIGNING_SECRET`), name their purpose and the one operation they open, last minutes,
and are never accepted as a bearer token (an `EventSource` cannot send an Authorization
header, hence a token in the URL).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

import jwt
from cachetools import TTLCache
from starlette.requests import Request

from .._errors import Unauthorized
from ._jwks import KeySet

EVENTS_PURPOSE: Final = "operation-events"
EVENTS_AUDIENCE: Final = "viewbait-operation-events"
EVENTS_TOKEN_TTL_S: Final = 600
MAX_USER_ID_LENGTH: Final = 255
#: Clock skew tolerated between the issuer and this service (`exp`, `nbf`).
LEEWAY_S: Final = 5
#: Tokens whose signature and claims were verified, kept to skip verifying them again
#: (a browser sends the same token on every request; a page may open many streams).
VERIFIED_TOKENS: Final = 1024
#: How long a verification is trusted before the token is verified again.
VERIFIED_FOR_S: Final = 60.0
_ASYMMETRIC: Final = frozenset({"ES256", "RS256"})


def load_secret(configured: str | None, data_dir: Path, name: str = "dev-jwt-secret") -> str:
    """The configured secret, or one kept in DATA_DIR under `name` (shared by the
    instances that share the folder; created on first use, readable by the owner only)."""
    if configured is not None:
        return configured
    path = data_dir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


class _Verified(NamedTuple):
    """A token that passed `_decode`: its header, what it was checked with (key,
    algorithm, audiences, issuer) and its claims."""

    header: dict[str, Any] | None
    checked_with: tuple[Any, ...]
    claims: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling; `operation_id` is set for a signed events link (scoped access)."""

    user_id: str
    operation_id: str | None = None


class Authenticator:
    """Checks user tokens (HS256 with `hs_secret`, ES256/RS256 with `key_set`) and issues
    and checks the service's signed links (with `signing_secret`); `clock` (seconds since
    the epoch) decides what has expired."""

    def __init__(
        self,
        *,
        hs_secret: str | None,
        key_set: KeySet | None = None,
        signing_secret: str,
        audiences: Sequence[str] = ("authenticated",),
        issuer: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._hs_secret = hs_secret
        self._key_set = key_set
        self._signing_secret = signing_secret
        self._audiences = list(audiences)
        self._issuer = issuer
        self._clock = clock
        # A verification is trusted for VERIFIED_FOR_S of the service's clock.
        self._verified: TTLCache[str, _Verified] = TTLCache(
            maxsize=VERIFIED_TOKENS, ttl=VERIFIED_FOR_S, timer=clock)

    # -- user tokens ----------------------------------------------------------------------

    def issue_user_token(self, user_id: str, ttl_s: int = 3600) -> str:
        """An HS256 user token (dev mode, or with AUTH_JWT_SECRET); tokens of a key set's
        issuer come from the issuer."""
        if self._hs_secret is None:
            raise ValueError("no AUTH_JWT_SECRET: user tokens come from the token issuer")
        now = int(self._clock())
        claims: dict[str, Any] = {"sub": user_id, "aud": self._audiences[0], "iat": now,
                                  "exp": now + ttl_s, "role": "authenticated"}
        if self._issuer is not None:
            claims["iss"] = self._issuer
        return jwt.encode(claims, self._hs_secret, algorithm="HS256")

    async def user(self, request: Request) -> Principal:
        """The caller of a bearer-authenticated endpoint; 401 otherwise."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("an Authorization: Bearer token is required")
        return Principal(await self.verify_user_token(token.strip()))

    async def verify_user_token(self, token: str) -> str:
        """The user id of a valid user token; 401 (or 503 while the key set is down)."""
        verified = self._verified.get(token)
        if verified is not None and verified.header is not None:
            header = verified.header
        else:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.InvalidTokenError:
                raise Unauthorized("the token is not valid") from None
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self._hs_secret is not None:
            key = self._hs_secret
        elif alg in _ASYMMETRIC and self._key_set is not None:
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise Unauthorized("the token names no signing key")
            jwk = await self._key_set.key(kid)
            if jwk.algorithm_name != alg:
                raise Unauthorized("the token's algorithm does not match its key")
            key = jwk.key
        else:
            raise Unauthorized("the token's algorithm is not accepted")
        claims = self._decode(token, key, alg, self._audiences, self._issuer, header=header)
        if "purpose" in claims:
            raise Unauthorized("a signed link is not a bearer token")
        return _user_of(claims)

    # -- signed links ---------------------------------------------------------------------

    def issue_events_token(self, user_id: str, operation_id: str) -> str:
        """The token of an operation's `links.events`: its events and resume, for minutes."""
        now = int(self._clock())
        claims = {"sub": user_id, "op": operation_id, "purpose": EVENTS_PURPOSE,
                  "aud": EVENTS_AUDIENCE, "iat": now, "exp": now + EVENTS_TOKEN_TTL_S}
        return jwt.encode(claims, self._signing_secret, algorithm="HS256")

    async def user_or_events_token(self, request: Request, operation_id: str) -> Principal:
        """The caller of an operation's events or resume: bearer header, or `?token=`."""
        if "authorization" in request.headers:
            return await self.user(request)
        token = request.query_params.get("token")
        if not token:
            raise Unauthorized("an Authorization: Bearer token or ?token= is required")
        claims = self._decode(token, self._signing_secret, "HS256", [EVENTS_AUDIENCE], None)
        if claims.get("purpose") != EVENTS_PURPOSE or claims.get("op") != operation_id:
            raise Unauthorized("the token is for another operation")
        return Principal(_user_of(claims), operation_id=operation_id)

    # -- both -----------------------------------------------------------------------------

    def _decode(
        self, token: str, key: Any, alg: str, audiences: list[str], issuer: str | None,
        *, header: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Signature, `aud` and `iss` by PyJWT; `exp` and `nbf` on the service's clock.

        A token verified with the same key and expectations in the last VERIFIED_FOR_S
        is not verified again (a key no longer in the key set is refused before this);
        `exp` and `nbf` are checked on every use. `header`: the token's, to keep."""
        now = self._clock()
        checked_with = (key, alg, audiences, issuer)
        cached = self._verified.get(token)
        if cached is not None and cached.checked_with == checked_with:
            claims = cached.claims
        else:
            try:
                claims = jwt.decode(
                    token, key, algorithms=[alg], audience=audiences, issuer=issuer,
                    options={"require": ["exp", "sub"], "verify_exp": False,
                             "verify_iat": False, "verify_nbf": False},
                )
            except jwt.InvalidTokenError:
                raise Unauthorized("the token is not valid") from None
            self._verified[token] = _Verified(header, checked_with, claims)
        exp, nbf = _seconds(claims.get("exp")), _seconds(claims.get("nbf", 0))
        if exp <= now - LEEWAY_S:
            raise Unauthorized("the token has expired")
        if nbf > now + LEEWAY_S:
            raise Unauthorized("the token is not valid yet")
        return claims


def _seconds(value: Any) -> float:
    """A NumericDate claim (seconds since the epoch); 401 for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthorized("the token is not valid")
    return float(value)


def _user_of(claims: dict[str, Any]) -> str:
    sub = claims.get("sub")
    if (not isinstance(sub, str) or not sub or len(sub) > MAX_USER_ID_LENGTH
            or not sub.isprintable()):
        raise Unauthorized("the token names no user")
    return sub
