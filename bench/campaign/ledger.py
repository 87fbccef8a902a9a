"""The books after a phase: each check counts its violations."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from checkpoints import TERMINAL_STATUSES, create_engine
from checkpoints._schema import operation_events, operation_steps, operations
from service.accounts import EDIT_CREDITS, RESOLUTION_CREDITS
from service.accounts._tables import accounts, credit_ledger, thumbnails
from service.operations._tables import heatmaps

from .clients import PROVIDER_CODES, Seen
from .cluster import Cluster

#: Every virtual user's balance when its phase starts.
CREDITS = 1_000_000


@dataclass
class Ledger:
    """The books after a phase, for its users: each check counts its violations."""

    checks: dict[str, int]
    facts: dict[str, int]
    details: list[str]
    #: Follower lag (ms) of live events: on the instance the client created on, and on
    #: the other one.
    lag_same: list[float]
    lag_other: list[float]

    @property
    def clean(self) -> bool:
        return not any(self.checks.values())


def _provider_calls(path: Path, prefix: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    calls = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [c for c in calls if c["kind"] == "heatmap" or (c["nonce"] or "").startswith(prefix)]


async def settled(engine: Any, users: list[str], limit_s: float) -> float:
    """Wait until every operation of `users` has ended (a run whose instance died and
    whose client never learnt its id is taken over by an instance on its own, within a
    lease period or two), for up to `limit_s`; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        async with engine.connect() as conn:
            unfinished = await conn.scalar(sa.select(sa.func.count()).where(
                operations.c.user_id.in_(users),
                operations.c.status.not_in(TERMINAL_STATUSES)))
        if not unfinished:
            break
        await asyncio.sleep(1.0)
    return time.monotonic() - started


async def check_ledger(cluster: Cluster, seen: Seen, users: list[str], prefix: str) -> Ledger:
    assert cluster.pg_url is not None
    engine = create_engine(cluster.pg_url)
    checks: dict[str, int] = {}
    facts: dict[str, int] = {}
    details: list[str] = []
    try:
        facts["seconds until every operation had ended"] = round(
            await settled(engine, users, 3 * cluster.lease_ttl_s))
        async with engine.connect() as conn:
            ops = (await conn.execute(sa.select(
                operations.c.id, operations.c.user_id, operations.c.kind, operations.c.status,
            ).where(operations.c.user_id.in_(users)))).all()
            rows = (await conn.execute(sa.select(
                thumbnails.c.id, thumbnails.c.user_id, thumbnails.c.resolution,
                thumbnails.c.image_key, thumbnails.c.image_400w_key,
                thumbnails.c.image_800w_key, operations.c.kind,
            ).join(operations, operations.c.id == thumbnails.c.operation_id)
              .where(thumbnails.c.user_id.in_(users)))).all()
            balances = dict((await conn.execute(sa.select(
                accounts.c.user_id, accounts.c.credits_remaining,
            ).where(accounts.c.user_id.in_(users)))).all())
            ledger_sums = dict((await conn.execute(sa.select(
                credit_ledger.c.user_id, sa.func.sum(credit_ledger.c.delta),
            ).where(credit_ledger.c.user_id.in_(users)).group_by(credit_ledger.c.user_id))).all())
            heatmap_renders = (await conn.execute(sa.select(
                operation_steps.c.operation_id, operation_steps.c.output,
            ).join(operations, operations.c.id == operation_steps.c.operation_id).where(
                operations.c.user_id.in_(users), operations.c.kind == "heatmap",
                operation_steps.c.key.in_(["load", "render"]),
                operation_steps.c.status == "completed",
            ))).all()
            heatmap_keys = set((await conn.execute(sa.select(heatmaps.c.heatmap_key))).scalars())
            event_times: dict[tuple[str, int], float] = {}
            for op_id, seq, at in (await conn.execute(sa.select(
                operation_events.c.operation_id, operation_events.c.seq,
                operation_events.c.created_at,
            ).where(operation_events.c.operation_id.in_(
                sa.select(operations.c.id).where(operations.c.user_id.in_(users)))))).all():
                event_times[(op_id, seq)] = at.timestamp()
    finally:
        await engine.dispose()

    facts["operations"] = len(ops)
    facts["operations seen by clients"] = len(seen.operations)
    by_status = Counter(op.status for op in ops)
    for status, n in sorted(by_status.items()):
        facts[f"  {status}"] = n
    not_terminal = [op.id for op in ops if op.status not in TERMINAL_STATUSES]
    checks["operations not terminal"] = len(not_terminal)
    details += [f"not terminal: {op_id}" for op_id in not_terminal[:5]]
    unknown = set(seen.operations) - {op.id for op in ops}
    checks["operations a client saw that have no row"] = len(unknown)

    # Renders: each variation of each operation delivered once, except where the process
    # that got the first delivery was killed before it could record it.
    calls = _provider_calls(cluster.calls_log, prefix)
    delivered = [c for c in calls if c["outcome"] == "image"]
    facts["provider calls"] = len(calls)
    facts["  of them images"] = len(delivered)
    facts["  of them 429/503"] = sum(c["outcome"] in ("429", "503") for c in calls)
    renders: dict[tuple[str, str, int | None], list[dict[str, Any]]] = defaultdict(list)
    for call in delivered:
        if call["kind"] in ("generate", "edit"):
            renders[(call["kind"], call["nonce"], call["variation"])].append(call)
    twice = excused = 0
    for key, got in renders.items():
        for earlier, again in itertools.pairwise(got):
            if cluster.cut_by_kill(earlier, again):
                excused += 1
            else:
                twice += 1
                details.append(f"rendered twice: {key}: " + ", ".join(
                    f"{c['key']} at {c['t'] - cluster.began:.1f} s" for c in got))
    heatmaps_by_image: Counter[str] = Counter()
    for outputs in _heatmap_outputs(heatmap_renders).values():
        if not outputs.get("render", {}).get("cached", True):
            heatmaps_by_image[outputs["load"]["sha256"]] += 1
    heatmap_calls = Counter(c["image"] for c in delivered if c["kind"] == "heatmap"
                            and c["image"] in heatmaps_by_image)
    for image, n in heatmap_calls.items():
        extra = n - heatmaps_by_image[image]
        if extra > 0:
            excusable = sum(1 for c in delivered if c["kind"] == "heatmap" and c["image"] == image
                            and cluster.cut_by_kill(c, None))
            excused += min(extra, excusable)
            twice += max(0, extra - excusable)
    checks["variations rendered twice (not cut by a kill)"] = twice
    facts["renders repeated after a kill"] = excused

    # Credits: what each user was charged is what its delivered thumbnails cost.
    cost: Counter[str] = Counter()
    for row in rows:
        cost[row.user_id] += (EDIT_CREDITS if row.kind == "thumbnail.edit"
                              else RESOLUTION_CREDITS[row.resolution])
    wrong = [u for u in users if u in balances and CREDITS - balances[u] != cost[u]]
    wrong_ledger = [u for u in users if u in balances and -(ledger_sums.get(u) or 0) != cost[u]]
    checks["users charged other than their thumbnails' cost"] = len(wrong)
    checks["users whose credit ledger disagrees"] = len(wrong_ledger)
    details += [f"credits: {u} charged {CREDITS - balances[u]}, delivered {cost[u]}"
                for u in wrong[:5]]
    facts["thumbnails delivered"] = len(rows)
    facts["credits charged"] = sum(CREDITS - b for b in balances.values())

    # Objects: every stored file belongs to a row.
    owned = {k for row in rows for k in (row.image_key, row.image_400w_key, row.image_800w_key)}
    stored_root = cluster.root / "shared" / "objects"
    orphans = 0
    user_segments = set(users)
    for path in _files(stored_root):
        key = path.relative_to(stored_root).as_posix()
        if key.startswith("thumbnails/"):
            if key.split("/")[1] in user_segments and key not in owned:
                orphans += 1
                details.append(f"object without a row: {key}")
        elif key.startswith("heatmaps/") and key not in heatmap_keys:
            orphans += 1
            details.append(f"object without a row: {key}")
    checks["stored objects without a row"] = orphans

    checks["event id gaps or duplicates in client streams"] = len(seen.stream_faults)
    details += seen.stream_faults[:5]
    unexplained = [(t, s, c) for t, s, c in seen.server_errors
                   if not (c in PROVIDER_CODES
                           or (c == "DATABASE_UNAVAILABLE" and cluster.in_outage("postgres", t))
                           or (c == "RATE_LIMIT_UNAVAILABLE" and cluster.in_outage("redis", t)))]
    checks["5xx not a provider fault or declared outage"] = len(unexplained)
    details += [f"5xx: {s} {c} {cluster.outage_distance(t)}" for t, s, c in unexplained[:5]]
    checks["operations a client gave up following"] = len(seen.abandoned)
    return Ledger(checks, facts, details, *_lags(seen, event_times))


def _heatmap_outputs(rows: list[Any]) -> dict[str, dict[str, Any]]:
    outputs: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in rows:
        output = row.output
        if isinstance(output, str):
            output = json.loads(output)
        step = "render" if "heatmap_key" in (output or {}) else "load"
        outputs[row.operation_id][step] = output or {}
    return {k: v for k, v in outputs.items() if "load" in v and "render" in v}


def _files(root: Path) -> Iterator[Path]:
    if root.exists():
        yield from (p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def _lags(seen: Seen, event_times: dict[tuple[str, int], float]
          ) -> tuple[list[float], list[float]]:
    """Follower lag (ms): receive time minus the event's commit time, for events
    committed after the stream connected (live ones, not replays)."""
    same: list[float] = []
    other: list[float] = []
    for op_id, seq, received, connected, cross in seen.received:
        at = event_times.get((op_id, seq))
        if at is None or at < connected:
            continue
        (other if cross else same).append(max(0.0, received - at) * 1e3)
    return same, other
