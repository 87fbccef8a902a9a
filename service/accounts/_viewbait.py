"""ViewBait's books: tiers from `subscription_tiers` by the user's Stripe product, prices
from `subscription_settings`, and credits moved only by ViewBait's own functions
`public.decrement_credits_atomic` and `public.increment_credits_atomic`.

Each movement is one transaction: a lock on the operation, its ledger entries (in the
service's schema), the function call with the movement's idempotency key, and the new
entry. Either all of it commits or none of it does, so the ledger always knows what
ViewBait charged for the operation; and a key that reached ViewBait before (a caller
replaying it) is answered `duplicate` and charges nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .._errors import CreditsRefused, InsufficientCredits, SettingsError, Unauthorized
from .._spec import RESOLUTIONS
from ._cache import TtlCache
from ._ledger import entries_of
from ._protocol import Charge
from ._tables import credit_ledger
from ._tiers import EDIT_CREDITS, RESOLUTION_CREDITS, TIERS, Account, Prices, Tier
from ._viewbait_tables import subscription_settings, subscription_tiers, user_subscriptions

log = logging.getLogger("service.accounts")

#: Tiers and prices are read again after at most this long (ViewBait caches them too).
CACHE_TTL_S: Final = 60.0
#: `subscription_settings` keys of the prices, by resolution.
PRICE_KEYS: Final[Mapping[str, str]] = {
    "1K": "resolution_credits_1k", "2K": "resolution_credits_2k", "4K": "resolution_credits_4k",
}
EDIT_PRICE_KEY: Final = "edit_credit_cost"
#: How ViewBait's functions are called: by argument name, with ViewBait's own search path
#: (as PostgREST calls them), whatever their bodies leave unqualified.
VIEWBAIT_SEARCH_PATH: Final = sa.text("SET LOCAL search_path TO public, extensions")
DECREMENT: Final = sa.text(
    "SELECT public.decrement_credits_atomic(p_user_id => CAST(:user_id AS uuid), "
    "p_cost => :amount, p_idempotency_key => :key, "
    "p_thumbnail_id => CAST(:thumbnail_id AS uuid), p_description => :description, "
    "p_transaction_type => :transaction_type)"
)
INCREMENT: Final = sa.text(
    "SELECT public.increment_credits_atomic(p_user_id => CAST(:user_id AS uuid), "
    "p_amount => :amount, p_idempotency_key => :key, p_description => :description, "
    "p_transaction_type => :transaction_type)"
)


def viewbait_user(user_id: str) -> str:
    """The user's id as ViewBait keeps it (a UUID); 401 for any other token subject."""
    try:
        return str(uuid.UUID(user_id))
    except ValueError:
        raise Unauthorized("the token's subject is not a ViewBait user id (a UUID)") from None


@dataclass(frozen=True, slots=True)
class CreditAnswer:
    """What ViewBait's credit functions answer."""

    success: bool
    duplicate: bool
    remaining: int
    reason: str | None

    @classmethod
    def parse(cls, raw: Any) -> CreditAnswer:
        answer = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
        return cls(bool(answer.get("success")), bool(answer.get("duplicate")),
                   int(answer.get("remaining") or 0), answer.get("reason"))


class ViewBaitAccounts:
    """Tiers, prices and balances in ViewBait's tables (`public`); the operations' credit
    ledger in the service's `schema`."""

    def __init__(
        self, engine: AsyncEngine, *, schema: str, stripe_mode: str = "live",
        clock: Callable[[], float] = time.time, cache_ttl_s: float = CACHE_TTL_S,
    ) -> None:
        self._engine = engine
        self._ledger = credit_ledger.to_metadata(sa.MetaData(), schema=schema)
        self._product = (subscription_tiers.c.test_product_id if stripe_mode == "test"
                         else subscription_tiers.c.live_product_id)
        self._tiers: TtlCache[str, Tier] = TtlCache(cache_ttl_s, clock)
        self._prices: TtlCache[str, Prices] = TtlCache(cache_ttl_s, clock)

    async def get(self, user_id: str) -> Account:
        user = viewbait_user(user_id)
        tier = await self._tiers.get(user, lambda: self._tier_of(user))
        async with self._engine.connect() as conn:
            balance = await _balance(conn, user)
        return Account(user_id, tier, balance)

    async def prices(self) -> Prices:
        return await self._prices.get("prices", self._read_prices)

    async def _tier_of(self, user: str) -> Tier:
        """The active tier of the user's product; with none (no subscription, no product,
        an unknown product), ViewBait's free tier."""
        tiers = subscription_tiers
        by_product = (
            sa.select(tiers)
            .join(user_subscriptions, user_subscriptions.c.product_id == self._product)
            .where(user_subscriptions.c.user_id == user, tiers.c.is_active.is_(True))
            .limit(1)
        )
        free = (sa.select(tiers)
                .where(tiers.c.tier_name == "free", tiers.c.is_active.is_(True)).limit(1))
        async with self._engine.connect() as conn:
            row = (await conn.execute(by_product)).first() or (await conn.execute(free)).first()
        return TIERS["free"] if row is None else tier_of(dict(row._mapping))

    async def _read_prices(self) -> Prices:
        keys = [*PRICE_KEYS.values(), EDIT_PRICE_KEY]
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                sa.select(subscription_settings.c.key, subscription_settings.c.value)
                .where(subscription_settings.c.key.in_(keys))
            )).all()
        values = {row.key: row.value for row in rows}
        per_resolution = {res: _credits(values, key, RESOLUTION_CREDITS[res])
                          for res, key in PRICE_KEYS.items()}
        return Prices(per_resolution, _credits(values, EDIT_PRICE_KEY, EDIT_CREDITS))

    async def set_charge(
        self, user_id: str, operation_id: str, target: int, charge: Charge
    ) -> int:
        user = viewbait_user(user_id)
        async with self._engine.begin() as conn:
            # One movement of an operation at a time (a zombie owner and its successor).
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_of(operation_id))))
            entries = await entries_of(conn, self._ledger, operation_id)
            change = target - entries.charged
            if change == 0:
                return await _balance(conn, user)
            key = entries.key_for(operation_id, change)
            answer = await _move(conn, user, change, key, _description(charge, change, key),
                                 charge)
            await conn.execute(self._ledger.insert().values(
                user_id=user_id, operation_id=operation_id, entry=key, delta=-change,
                created_at=datetime.now(UTC),
            ))
            return answer.remaining


async def _move(
    conn: AsyncConnection, user: str, change: int, key: str, description: str, charge: Charge
) -> CreditAnswer:
    """Charge (`change` > 0) or refund through ViewBait's functions."""
    await conn.execute(VIEWBAIT_SEARCH_PATH)
    params: dict[str, Any] = {"user_id": user, "amount": abs(change), "key": key,
                              "description": description}
    if change > 0:
        params.update(thumbnail_id=charge.thumbnail_id,
                      transaction_type=charge.transaction_type)
        answer = CreditAnswer.parse(await conn.scalar(DECREMENT, params))
    else:
        params.update(transaction_type="refund")
        answer = CreditAnswer.parse(await conn.scalar(INCREMENT, params))
    if not answer.success:
        if answer.reason == "INSUFFICIENT":
            raise InsufficientCredits(f"this needs {change} credits; {answer.remaining} remain")
        log.error("ViewBait's credit function refused %s: %s", key, answer.reason)
        raise CreditsRefused(f"ViewBait's credits refused the movement ({answer.reason})")
    if answer.duplicate:
        log.warning("credit movement %s was answered as a duplicate: charged before", key)
    return answer


#: ViewBait's tables the service reads or writes, and its functions with the argument
#: names the service calls them by.
VIEWBAIT_TABLES: Final = ("user_subscriptions", "subscription_tiers", "subscription_settings",
                          "thumbnails")
VIEWBAIT_FUNCTIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "decrement_credits_atomic": ("p_user_id", "p_cost", "p_idempotency_key", "p_thumbnail_id",
                                 "p_description", "p_transaction_type"),
    "increment_credits_atomic": ("p_user_id", "p_amount", "p_idempotency_key",
                                 "p_description", "p_transaction_type"),
}
_FUNCTION_WITH_ARGUMENTS: Final = sa.text(
    "SELECT count(*) FROM pg_proc JOIN pg_namespace ON pg_namespace.oid = pronamespace "
    "WHERE nspname = 'public' AND proname = :name AND proargnames @> CAST(:args AS text[])"
)


async def check_viewbait_database(engine: AsyncEngine, schema: str) -> None:
    """Refuse to start (`SettingsError`) on a database without ViewBait's tables and
    credit functions (by the argument names the service uses), or where `python -m
    service migrate` has not made the service's tables yet. A database that cannot be
    reached is left to /readyz."""
    missing = []
    try:
        async with engine.connect() as conn:
            for table in VIEWBAIT_TABLES:
                if await conn.scalar(sa.select(sa.func.to_regclass(f"public.{table}"))) is None:
                    missing.append(f"public.{table}")
            for name, args in VIEWBAIT_FUNCTIONS.items():
                if not await conn.scalar(_FUNCTION_WITH_ARGUMENTS,
                                         {"name": name, "args": list(args)}):
                    missing.append(f"public.{name}({', '.join(args)})")
            migrated = await conn.scalar(
                sa.select(sa.func.to_regclass(f"{schema}.operations")))
    except (OSError, sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        log.warning("ViewBait's tables not checked at start, the database is unreachable: %s",
                    exc)
        return
    if missing:
        raise SettingsError(
            "ACCOUNTS_BACKEND=viewbait, but the database of DATABASE_URL lacks ViewBait's "
            f"{', '.join(missing)}: is it ViewBait's Supabase database?"
        )
    if migrated is None:
        raise SettingsError(f"the schema {schema} has no tables of the service yet: run "
                            "`python -m service migrate` first")


def tier_of(row: Mapping[str, Any]) -> Tier:
    """A `subscription_tiers` row as the gates use it: its resolutions, variations and
    watermark; aspect ratios and features by tier name, as the service's tiers have them."""
    known = TIERS.get(row["tier_name"], TIERS["free"])
    allowed = {str(r).upper() for r in row["allowed_resolutions"] or ()}
    return Tier(
        name=row["tier_name"], credits=int(row["credits_per_month"] or 0),
        resolutions=tuple(r for r in RESOLUTIONS if r in allowed) or ("1K",),
        aspect_ratios=known.aspect_ratios, max_variations=max(1, int(row["max_variations"] or 1)),
        heatmaps=known.heatmaps, video_analysis=known.video_analysis,
        has_watermark=bool(row["has_watermark"]),
    )


async def _balance(conn: AsyncConnection, user: str) -> int:
    remaining = await conn.scalar(
        sa.select(user_subscriptions.c.credits_remaining)
        .where(user_subscriptions.c.user_id == user)
    )
    return int(remaining or 0)


def _credits(values: Mapping[str, str], key: str, default: int) -> int:
    try:
        value = int(values[key])
    except (KeyError, ValueError):
        if key in values:
            log.warning("subscription_settings.%s is not an integer; using %d", key, default)
        return default
    return value if value >= 0 else default


def _description(charge: Charge, change: int, key: str) -> str:
    """How the movement reads in ViewBait's credit history."""
    again = " (resumed)" if key.rsplit(":", 1)[-1].isdigit() else ""
    if change > 0:
        return f"{charge.description}{again}"
    credits = "1 credit" if change == -1 else f"{-change} credits"
    return f"Refund of {credits} not used: {charge.description}{again}"


def _lock_of(operation_id: str) -> int:
    """A transaction-level advisory lock id of the operation (a signed 64-bit number)."""
    digest = hashlib.sha256(f"viewbait-credits:{operation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
