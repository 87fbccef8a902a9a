"""What the operations and the HTTP edge ask of the books — tiers, prices, credits and
thumbnail rows — as two small protocols, each with two implementations: the service's
own tables (`Accounts`, `ServiceThumbnails`) and ViewBait's (`ViewBaitAccounts`,
`ViewBaitThumbnails`).

Credit invariant, on both: the net credits charged for an operation equal the cost of
what it delivered. Operations never add or subtract credits: they *set* their net charge
to a target (what is under way or delivered, e.g. at `reserve` and `settle`), and the
books turn the difference into one movement with a deterministic idempotency key, written
in the same transaction as the operation's ledger entry that makes the next call see it.
So a retried, resumed or taken-over step moves nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ._tiers import Account, Prices


@dataclass(frozen=True, slots=True)
class Charge:
    """What an operation's credits pay for, as a person reads it in a credit history."""

    #: ViewBait's transaction type of a charge: `generation` or `edit` (refunds: `refund`).
    transaction_type: str
    #: e.g. `2 thumbnails at 2K: “My title”`.
    description: str
    #: The existing thumbnail the charge concerns (an edit's source), if any.
    thumbnail_id: str | None = None


class AccountsBackend(Protocol):
    """Tiers, prices and credit balances."""

    async def get(self, user_id: str) -> Account:
        """The user's tier and balance now."""
        ...

    async def prices(self) -> Prices:
        """Credits of a thumbnail by resolution, and of an edit."""
        ...

    async def set_charge(
        self, user_id: str, operation_id: str, target: int, charge: Charge
    ) -> int:
        """Make the operation's net charge `target` credits; returns the balance after.

        Raises `InsufficientCredits` (402) when the balance cannot cover an increase;
        then nothing is written.
        """
        ...


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """A user's thumbnail, as edits and heatmaps read it."""

    id: str
    title: str
    image_key: str
    #: None when the row does not say (then the image tells).
    resolution: str | None
    aspect_ratio: str | None


@dataclass(frozen=True, slots=True)
class NewThumbnail:
    """A thumbnail an operation delivered: its stored images and what it was made from."""

    id: str
    user_id: str
    operation_id: str
    title: str
    image_key: str
    image_400w_key: str
    image_800w_key: str
    width: int
    height: int
    resolution: str
    aspect_ratio: str
    provider: str
    style: str | None = None
    palette: str | None = None
    emotion: str | None = None
    project_id: str | None = None
    has_watermark: bool = False


class ThumbnailRows(Protocol):
    """Where thumbnails are listed (the gallery)."""

    async def load(self, user_id: str, thumbnail_id: str) -> Thumbnail:
        """A thumbnail of this user; 404 `NotFound` for an unknown id or someone else's."""
        ...

    async def record(self, thumbnail: NewThumbnail) -> None:
        """Add the thumbnail once (recording it again adds nothing)."""
        ...
