"""The step runner: claims operations and executes their plans of named steps (see
`Run`) against the checkpoint store.

A plan is an ordered list of steps. Consecutive steps that name a `group` form a block
whose groups run concurrently (each group in order), e.g. one group per thumbnail
variation. A completed step is never run again: its recorded output is handed to later
steps. Each start, completion, failure and skip is a fenced write that also appends the
matching `step` event; a completion goes with the start of the step that follows it in
one write (one statement), before that step runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from ._errors import LeaseLost
from ._models import JSON, Operation, lease_of
from ._outage import durable
from ._run import Run
from ._steps import DescribeError, StepWrapper, describe_error
from ._store import CheckpointStore


class Runner:
    """Claims operations and runs their plans; one per process (its `owner` name)."""

    def __init__(
        self,
        store: CheckpointStore,
        *,
        owner: str,
        lease_ttl: float = 30.0,
        renew_every: float | None = None,
        wrap: StepWrapper | None = None,
        describe_error: DescribeError = describe_error,
        public_output: Callable[[JSON], JSON] | None = None,
        sleep: Callable[[float], Coroutine[Any, Any, None]] = asyncio.sleep,
        outage_patience: float = 60.0,
    ) -> None:
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be positive")
        self.store = store
        self.owner = owner
        self.lease_ttl = lease_ttl
        self.renew_every = renew_every if renew_every is not None else lease_ttl / 3
        self.wrap = wrap
        self.describe_error = describe_error
        #: What a step's `completed` event shows of its output (default: all of it); the
        #: checkpoint keeps the whole output either way.
        self.public_output = public_output or (lambda output: output)
        self.sleep = sleep
        #: How long a run waits out a database it cannot reach (a restart, a failover)
        #: before it gives up: its steps' checkpoints are written once the database is
        #: back, so the paid work they record is never done twice.
        self.outage_patience = outage_patience

    @contextlib.asynccontextmanager
    async def claim(self, operation_id: str, *, taken: Operation | None = None
                    ) -> AsyncIterator[Run]:
        """Hold the operation's lease for the body, renewed in the background.

        Raises `LeaseUnavailable` when a live owner holds it. If a newer owner takes it
        over meanwhile, the body is cancelled and `LeaseLost` raised. The lease is
        released on the way out. The run's step records are read by its `plan`.
        `taken`: the operation as this owner already holds it (created leased to it, see
        `CheckpointStore.create_operation`): nothing to take.
        """
        if taken is not None:
            if taken.id != operation_id or taken.lease_owner != self.owner:
                raise ValueError(f"operation {operation_id} is not held by {self.owner}")
            lease, operation = lease_of(taken), taken
        else:
            lease, operation = await self.store.take_operation(
                operation_id, self.owner, self.lease_ttl
            )
        run = Run(self, lease, operation)
        task = asyncio.current_task()
        keeper = asyncio.create_task(run.keep_lease(task), name=f"lease:{operation_id}")
        try:
            yield run
        except asyncio.CancelledError:
            if run.lost and task is not None and task.uncancel() == 0:
                raise LeaseLost(lease.operation_id, lease.token) from None
            raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            # A finished operation's last write released the lease already.
            if not (run.lost or run.finished):
                with contextlib.suppress(Exception):
                    await run.flush()  # what it held back for `finish`
                with contextlib.suppress(Exception):
                    await durable(self.store.release_lease(run.lease))
