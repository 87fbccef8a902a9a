"""Headers, heartbeats, logs, metrics, readiness and outages of Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sys

import httpx
import pytest

from service.web import Authenticator
from tests.conftest import ROOT, ExternalServer, child_env
from tests.servers import PostgresServer, RedisServer
from tests.service.conftest import SECRET, auth
from tests.service.test_streams import set_account

pytestmark = pytest.mark.anyio


async def test_rate_limited_routes_send_their_policy_on_every_answer(client):
    """Errors of a rate-limited route carry RateLimit-Policy too; admitted answers also
    RateLimit."""
    bad = await client.post("/v1/thumbnails", json={"title": 1}, headers=auth())
    assert bad.status_code == 400
    assert bad.headers["RateLimit-Policy"] == '"generate";q=20;w=60'
    missing = await client.get("/v1/operations/nope", headers=auth())
    assert missing.status_code == 404
    assert missing.headers["RateLimit-Policy"] == '"operations";q=120;w=60'
    account = await client.get("/v1/account", headers=auth())
    assert account.headers["RateLimit"].startswith('"operations";r=119;t=')


async def test_the_concurrency_slot_refuses_a_third_run_in_flight(spawn, service_env):
    """generate allows 2 runs in flight per user: the third concurrent creation is 429."""
    await set_account(service_env, "user-1", "pro", 50)
    server = spawn({**service_env, "LOCAL_PROVIDER_DELAY_MS": "3000"})
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        answers = [
            await client.post("/v1/thumbnails", json={"title": f"t{i}"},
                              headers={**auth(), "Prefer": "respond-async"})
            for i in range(3)
        ]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert answers[2].headers["Retry-After"] == "1"


async def test_concurrent_generations_never_overdraw_the_balance(spawn, service_env, tmp_path):
    """8 concurrent 1-credit generations against 3 credits: exactly 3 are delivered, the
    rest are refused with 402 (before or inside the run), and the balance ends at 0."""
    limits = tmp_path / "limits.toml"
    limits.write_text('[routes.generate]\nlimit = 50\nwindow_s = 60\nconcurrency = 20\n')
    await set_account(service_env, "user-1", "free", 3)
    server = spawn({**service_env, "RATE_LIMITS": str(limits), "SYNC_WAIT_S": "120"})
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        answers = await asyncio.gather(*(
            client.post("/v1/thumbnails", json={"title": f"t{i}"}, headers=auth())
            for i in range(8)
        ))
        account = (await client.get("/v1/account", headers=auth())).json()
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) == 3
    assert all(a.json()["code"] == "INSUFFICIENT_CREDITS" for a in answers
               if a.status_code != 200)
    assert account.get("credits_remaining") == 0, account


async def test_streams_send_heartbeats_while_nothing_happens(spawn, sqlite_url, tmp_path):
    """With HEARTBEAT_S=0.2, comment lines keep coming while a 2 s step runs, and the
    stream still ends with the run's result."""
    server = spawn({"DATABASE_URL": sqlite_url, "DATA_DIR": str(tmp_path / "data"),
                    "AUTH_JWT_SECRET": SECRET, "LOCAL_PROVIDER_DELAY_MS": "2000",
                    "HEARTBEAT_S": "0.2"})
    comments, last_event = 0, None
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client, client.stream(
        "POST", "/v1/thumbnails", json={"title": "slow"},
        headers={**auth(), "Accept": "text/event-stream"},
    ) as response:
        async with asyncio.timeout(30):
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    comments += 1
                elif line.startswith("event:"):
                    last_event = line.partition(":")[2].strip()
    assert last_event == "result"
    assert comments >= 3, f"only {comments} heartbeats during a 2 s step"


async def test_json_logs_have_one_line_per_step_and_operation(spawn, service_env):
    """LOG_FORMAT=json: each step and the operation end as a JSON line with ids,
    duration and outcome."""
    server = spawn({**service_env, "LOG_FORMAT": "json"})
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        done = await client.post("/v1/thumbnails", json={"title": "logged"}, headers=auth())
    op_id = done.json()["operation"]["id"]
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    steps = [line for line in lines if line.get("operation_id") == op_id
             and line["message"] == "step"]
    assert [s["step"] for s in steps] == ["reserve", "v1/render", "v1/variants", "v1/record",
                                          "settle"]
    assert all(s["outcome"] == "completed" and s["user_id"] == "user-1"
               and isinstance(s["duration_ms"], int) for s in steps)
    (finished,) = [line for line in lines if line.get("operation_id") == op_id
                   and line["message"] == "operation finished"]
    assert finished["outcome"] == "succeeded"


async def test_metrics_count_operations_steps_decisions_and_streams(client):
    """/metrics exposes operations by kind and outcome, step durations, rate-limit
    decisions and open streams."""
    await client.post("/v1/thumbnails", json={"title": "m"}, headers=auth())
    text = (await client.get("/metrics")).text
    assert ('viewbait_operations_total{kind="thumbnail.generate",outcome="succeeded"} 1.0'
            in text)
    assert 'viewbait_step_duration_seconds_count{kind="thumbnail.generate",outcome="completed",step="render"} 1.0' in text  # noqa: E501
    assert 'ratelimit_allowed_total{route="generate"} 1.0' in text
    assert "viewbait_open_event_streams 0.0" in text


async def test_readiness_and_fail_closed_routes_follow_redis(
    spawn, pg_url, redis_server, tmp_path
):
    """Redis down: /readyz is 503, generate (fail closed) answers 503
    RATE_LIMIT_UNAVAILABLE with Retry-After, the account (fail open) still answers;
    Redis back: everything answers again without a restart."""
    if not isinstance(redis_server, RedisServer):
        pytest.skip("TEST_REDIS_URL points at a server this test must not kill")
    env = {"DATABASE_URL": pg_url, "REDIS_URL": redis_server.url,
           "DATA_DIR": str(tmp_path / "data"), "AUTH_JWT_SECRET": "x" * 40}
    server = spawn(env)
    headers = {"Authorization": "Bearer " + Authenticator("x" * 40).issue_user_token("u")}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.get("/readyz")).json()["redis"] == "ok"
        redis_server.kill()
        try:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["redis"] == "unreachable"
            refused = await client.post("/v1/thumbnails", json={"title": "t"},
                                        headers={**headers, "Prefer": "respond-async"})
            assert refused.status_code == 503
            assert refused.json()["code"] == "RATE_LIMIT_UNAVAILABLE"
            assert int(refused.headers["Retry-After"]) >= 1
            assert (await client.get("/v1/account", headers=headers)).status_code == 200
        finally:
            redis_server.start()
        for _ in range(50):  # the breaker's cool-down, then Redis decides again
            answer = await client.post("/v1/thumbnails", json={"title": "t"},
                                       headers={**headers, "Prefer": "respond-async"})
            if answer.status_code == 202:
                break
            await asyncio.sleep(0.2)
        assert answer.status_code == 202
        assert (await client.get("/readyz")).status_code == 200


async def test_a_database_outage_is_503_and_recovers(spawn, postgres, pg_url, tmp_path):
    """PostgreSQL down: /readyz 503 and API calls answer 503 DATABASE_UNAVAILABLE (not
    500); PostgreSQL back: the same process serves again."""
    if isinstance(postgres, ExternalServer):
        pytest.skip("TEST_DATABASE_URL points at a server this test must not kill")
    assert isinstance(postgres, PostgresServer)
    env = {"DATABASE_URL": pg_url, "DATA_DIR": str(tmp_path / "data"),
           "AUTH_JWT_SECRET": "x" * 40}
    server = spawn(env)
    headers = {"Authorization": "Bearer " + Authenticator("x" * 40).issue_user_token("u")}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.get("/v1/account", headers=headers)).status_code == 200
        postgres.kill()
        try:
            assert (await client.get("/readyz")).status_code == 503
            down = await client.get("/v1/account", headers=headers)
            assert down.status_code == 503
            assert down.json()["code"] == "DATABASE_UNAVAILABLE"
        finally:
            postgres.start()
        for _ in range(50):
            if (await client.get("/v1/account", headers=headers)).status_code == 200:
                break
            await asyncio.sleep(0.2)
        assert (await client.get("/readyz")).status_code == 200


async def test_the_token_command_prints_a_token_the_service_accepts(client, service_env):
    """`python -m service token USER` with the deployment's settings."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "token", "cli-user", "--ttl", "60",
        cwd=ROOT, env={**child_env(), **service_env}, stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    account = await client.get("/v1/account",
                               headers={"Authorization": f"Bearer {out.decode().strip()}"})
    assert account.json()["user_id"] == "cli-user"


async def test_accounts_and_prune_commands(client, service_env):
    """`accounts set` changes tier and credits; `prune` deletes old finished operations
    (here: all finished ones, with an age of zero days)."""

    async def command(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", *args, cwd=ROOT,
            env={**child_env(), **service_env}, stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0, args
        return out.decode()

    assert "tier pro, 42 credits" in await command("accounts", "set", "user-1", "--tier",
                                                   "pro", "--credits", "42")
    assert (await client.get("/v1/account", headers=auth())).json()["tier"] == "pro"
    done = await client.post("/v1/thumbnails", json={"title": "old"}, headers=auth())
    op_id = done.json()["operation"]["id"]
    assert "deleted 1 finished operations" in await command("prune", "--older-than-days", "0")
    assert (await client.get(f"/v1/operations/{op_id}", headers=auth())).status_code == 404
