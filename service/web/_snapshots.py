"""The operation snapshot of the contract, with freshly signed URLs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from checkpoints import JSON, Operation, StepRecord

from .._storage import Storage
from ._responses import OperationSnapshot

#: Step output fields that describe storage, not the result.
_PRIVATE_FIELDS = frozenset({"sha256"})
#: Stored object keys in results, and the URL fields they become.
_URL_FIELDS = {
    "image_key": "image_url",
    "image_400w_key": "image_400w_url",
    "image_800w_key": "image_800w_url",
    "heatmap_key": "heatmap_url",
}


def public_output(output: JSON) -> JSON:
    """A step's output as its event shows it: ids and URLs, not the storage layout
    (object keys, content digests) that later steps read from the checkpoint."""
    if isinstance(output, dict):
        return {name: public_output(value) for name, value in output.items()
                if not name.endswith("_key") and name not in _PRIVATE_FIELDS}
    if isinstance(output, list):
        return [public_output(item) for item in output]
    return output


class Snapshots:
    """Snapshots of operations as clients see them: steps in plan order, and object keys
    in results replaced by signed URLs (valid for 7 days from each snapshot)."""

    def __init__(self, storage: Storage, base_url: str | None) -> None:
        self._storage = storage
        self._base_url = base_url

    async def of(self, op: Operation, steps: Sequence[StepRecord]) -> dict[str, Any]:
        """The snapshot of `op` whose step records are `steps`."""
        snapshot = OperationSnapshot.model_validate({
            "id": op.id,
            "kind": op.kind,
            "status": op.status,
            "steps": [
                {"key": s.key, "status": s.status, "attempts": s.attempts}
                for s in sorted(steps, key=lambda s: s.position)
            ],
            "result": None if op.result is None else await self._signed(op.result),
            "error": None if op.error is None else dict(op.error),
            "created_at": op.created_at.isoformat(),
            "updated_at": op.updated_at.isoformat(),
        })
        return snapshot.model_dump(mode="json", exclude_unset=True)

    async def sign(self, key: str) -> str:
        """A signed URL of one stored object."""
        return await self._storage.signed_url(key, base_url=self._base_url)

    async def _signed(self, value: Any) -> Any:
        """Replace stored object keys by signed URLs, anywhere in the result."""
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for name, item in value.items():
                if name in _URL_FIELDS and isinstance(item, str):
                    out[_URL_FIELDS[name]] = await self.sign(item)
                else:
                    out[name] = await self._signed(item)
            return out
        if isinstance(value, list):
            return [await self._signed(item) for item in value]
        return value
