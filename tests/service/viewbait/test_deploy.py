"""Deployed on ViewBait's database: `migrate` leaves ViewBait's schema alone, a pooler
that loses notifications is refused, and a crashed instance's run is resumed by another
with ViewBait's ledger charged once (real service processes)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from service import Settings, SettingsError, create_app, migrate
from service.__main__ import main
from service._database import check_notifications
from tests.conftest import ROOT, child_env
from tests.servers import postgres_bindir
from tests.service.conftest import auth, in_process
from tests.service.sse import collect
from tests.service.viewbait.conftest import database_url, dsn
from tests.service.viewbait.test_books import wait_for_a_lock_waiter

pytestmark = pytest.mark.anyio

OWN_TABLES = {"alembic_version", "operations", "operation_steps", "operation_events",
              "accounts", "credit_ledger", "thumbnails", "heatmaps", "video_analyses"}


def dump(url: str) -> str:
    """pg_dump of everything, rows too, but the service's schema (without the random key
    of `\\restrict`)."""
    parsed = sa.make_url(url)
    out = subprocess.run(
        [str(postgres_bindir() / "pg_dump"), "--exclude-schema=viewbait_ai",
         "-h", str(parsed.host), "-p", str(parsed.port), "-U", str(parsed.username),
         str(parsed.database)],
        capture_output=True, text=True, check=True,
    )
    return "\n".join(line for line in out.stdout.splitlines()
                     if not line.startswith(("\\restrict", "\\unrestrict")))


async def test_migrate_creates_the_services_schema_and_leaves_public_untouched(
    bare_viewbait_url, tmp_path
):
    """`python -m service migrate` on ViewBait's database, then again: every table of the
    service, Alembic's version table included, is in `viewbait_ai`; a dump of everything
    else, rows included, is byte for byte what it was."""
    env = {"DATABASE_URL": bare_viewbait_url, "ACCOUNTS_BACKEND": "viewbait",
           "DATA_DIR": str(tmp_path / "data")}
    before = dump(bare_viewbait_url)
    migrated = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "migrate", cwd=ROOT, env={**child_env(), **env},
        stderr=asyncio.subprocess.PIPE)
    _, err = await migrated.communicate()
    assert migrated.returncode == 0, err.decode()
    await migrate(bare_viewbait_url, schema="viewbait_ai")
    assert dump(bare_viewbait_url) == before
    conn = await asyncpg.connect(dsn(bare_viewbait_url))
    try:
        tables = {(r["table_schema"], r["table_name"]) for r in await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('public', 'viewbait_ai')")}
    finally:
        await conn.close()
    assert {name for schema, name in tables if schema == "viewbait_ai"} == OWN_TABLES
    assert {name for schema, name in tables if schema == "public"} == {
        "subscription_tiers", "user_subscriptions", "subscription_settings", "thumbnails",
        "credit_transactions", "credit_idempotency_keys"}


def test_the_accounts_command_leaves_viewbaits_books_to_viewbait(
    viewbait_url, tmp_path, monkeypatch, capsys
):
    """`accounts set` with ACCOUNTS_BACKEND=viewbait: refused, naming where tiers and
    credits change; nothing is written."""
    monkeypatch.setenv("DATABASE_URL", viewbait_url)
    monkeypatch.setenv("ACCOUNTS_BACKEND", "viewbait")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    assert main(["accounts", "set", str(uuid.uuid4()), "--credits", "5"]) == 2
    assert "tiers and credits are ViewBait's" in capsys.readouterr().err


async def test_a_pool_whose_notifications_never_reach_listen_is_refused(viewbait_url):
    """NOTIFY sent through the pool that never reaches the LISTEN connection (as through
    Supabase's transaction pooler) stops the start with a message naming the
    session-mode and direct connection strings."""
    elsewhere = dsn(viewbait_url, "postgres")  # notifications are per database
    engine = create_async_engine(
        sa.make_url(viewbait_url), async_creator=lambda: asyncpg.connect(elsewhere))
    try:
        with pytest.raises(SettingsError, match=r"session-mode pooler .* direct connection"):
            await check_notifications(engine, timeout=0.5)
    finally:
        await engine.dispose()


async def test_a_run_killed_while_charging_is_charged_once_by_the_instance_that_resumes(
    spawn, viewbait_env, viewbait
):
    """kill -9 an instance while `decrement_credits_atomic` waits for the user's row; the
    killed transaction rolls back, and another instance that takes the run over charges
    4 credits once: one `credit_transactions` row, one idempotency key, and the
    functions answer `duplicate` when the operation's keys are replayed."""
    user = await viewbait.user("prod_live_starter", credits=10)
    body = {"title": "Crash while charging", "resolution": "2K", "variations": 2}
    elsewhere = await asyncpg.connect(viewbait.dsn)
    try:
        async with elsewhere.transaction():  # ViewBait's own write to the row, in flight
            await elsewhere.execute("SELECT 1 FROM public.user_subscriptions "
                                    "WHERE user_id = $1 FOR UPDATE", uuid.UUID(user))
            first = spawn(viewbait_env, "first")
            async with httpx.AsyncClient(base_url=first.url, timeout=60) as client:
                created = await client.post("/v1/thumbnails", json=body,
                                            headers={**auth(user), "Prefer": "respond-async"})
            assert created.status_code == 202, created.text
            await wait_for_a_lock_waiter(viewbait)
            first.kill()
    finally:
        await elsewhere.close()
    op_id = created.json()["operation_id"]
    second = spawn(viewbait_env, "second")
    async with httpx.AsyncClient(base_url=second.url, timeout=60) as client, client.stream(
        "GET", f"/v1/operations/{op_id}/events", headers=auth(user)
    ) as response:
        seen = await collect(response)
    assert seen[-1].event == "result", seen[-1]
    assert seen[-1].data["operation"]["status"] == "succeeded"
    assert await viewbait.credits(user) == 6
    assert [(t["amount"], t["type"]) for t in await viewbait.transactions(user)] == [
        (-4, "generation")]
    key = f"op:{op_id}:reserve"
    assert await viewbait.ledger(op_id) == [(key, -4)]
    assert await viewbait.fetch("SELECT idempotency_key FROM public.credit_idempotency_keys"
                                ) == [(key,)]
    assert len(await viewbait.thumbnails(user)) == 2
    replayed = await viewbait.value(
        "SELECT public.decrement_credits_atomic(p_user_id => $1, p_cost => 4, "
        "p_idempotency_key => $2, p_thumbnail_id => NULL, p_description => 'replay', "
        "p_transaction_type => 'generation')::text", uuid.UUID(user), key)
    assert json.loads(replayed)["duplicate"] is True
    assert await viewbait.credits(user) == 6
    assert len(await viewbait.transactions(user)) == 1


@pytest.mark.parametrize(("database", "message"), [
    ("not ViewBait's", "lacks ViewBait's public.user_subscriptions"),
    ("not migrated", "run `python -m service migrate` first"),
])
async def test_a_database_that_is_not_ready_for_viewbaits_books_stops_the_start(
    bare_viewbait_url, tmp_path, database, message
):
    """ACCOUNTS_BACKEND=viewbait on a database without ViewBait's tables and functions, or
    before `migrate`: the start fails with a message saying which."""
    url = bare_viewbait_url if database == "not migrated" else database_url(
        bare_viewbait_url, "postgres")
    app = create_app(Settings.from_env({
        "DATABASE_URL": url, "ACCOUNTS_BACKEND": "viewbait", "DATA_DIR": str(tmp_path)}))
    with pytest.raises(SettingsError, match=re.escape(message)):
        async with in_process(app):
            pass
