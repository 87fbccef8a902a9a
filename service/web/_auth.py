"""Supabase-compatible bearer tokens, and the short-lived tokens of event URLs.

User tokens: HS256, `sub` = user id, `exp`, `aud = "authenticated"`. Event-URL tokens are
signed with the same secret but their own audience, and name one operation and user: they
open that operation's event stream and its resume, nothing else, for a few minutes (an
`EventSource` cannot send an Authorization header).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jwt
from starlette.requests import Request

from .._errors import Unauthorized

USER_AUDIENCE: Final = "authenticated"
EVENTS_AUDIENCE: Final = "viewbait-operation-events"
EVENTS_TOKEN_TTL_S: Final = 600
MAX_USER_ID_LENGTH: Final = 255


def load_secret(configured: str | None, data_dir: Path) -> str:
    """The configured secret, or a dev secret kept in DATA_DIR (shared by the instances
    that share the folder; created on first use, readable by the owner only)."""
    if configured is not None:
        return configured
    path = data_dir / "dev-jwt-secret"
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling; `operation_id` is set for an event-URL token (scoped access)."""

    user_id: str
    operation_id: str | None = None


class Authenticator:
    """Issues and checks tokens under `secret`; `clock` (seconds since the epoch) decides
    what has expired."""

    def __init__(self, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._clock = clock

    def issue_user_token(self, user_id: str, ttl_s: int = 3600) -> str:
        now = int(self._clock())
        claims = {"sub": user_id, "aud": USER_AUDIENCE, "iat": now, "exp": now + ttl_s,
                  "role": "authenticated"}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def issue_events_token(self, user_id: str, operation_id: str) -> str:
        now = int(self._clock())
        claims = {"sub": user_id, "op": operation_id, "aud": EVENTS_AUDIENCE, "iat": now,
                  "exp": now + EVENTS_TOKEN_TTL_S}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def _decode(self, token: str, audience: str) -> dict[str, object]:
        try:
            # Expiry is checked below against the service's clock, not PyJWT's.
            claims: dict[str, object] = jwt.decode(
                token, self._secret, algorithms=["HS256"], audience=audience,
                options={"require": ["exp", "sub"], "verify_exp": False, "verify_iat": False,
                         "verify_nbf": False},
            )
        except jwt.InvalidTokenError:
            raise Unauthorized("the token is not valid") from None
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise Unauthorized("the token is not valid")
        if exp <= self._clock():
            raise Unauthorized("the token has expired")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > MAX_USER_ID_LENGTH:
            raise Unauthorized("the token names no user")
        return claims

    def user(self, request: Request) -> Principal:
        """The caller of a bearer-authenticated endpoint; 401 otherwise."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("an Authorization: Bearer token is required")
        return Principal(str(self._decode(token.strip(), USER_AUDIENCE)["sub"]))

    def user_or_events_token(self, request: Request, operation_id: str) -> Principal:
        """The caller of an operation's events or resume: bearer header, or `?token=`."""
        if "authorization" in request.headers:
            return self.user(request)
        token = request.query_params.get("token")
        if not token:
            raise Unauthorized("an Authorization: Bearer token or ?token= is required")
        claims = self._decode(token, EVENTS_AUDIENCE)
        if claims.get("op") != operation_id:
            raise Unauthorized("the token is for another operation")
        return Principal(str(claims["sub"]), operation_id=operation_id)
