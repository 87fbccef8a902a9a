"""Object storage for images: local files under DATA_DIR, served through signed URLs.

Keys follow ViewBait's layout: `thumbnails/{user_id}/{thumbnail_id}/thumbnail.png`,
`…/thumbnail-400w.jpg`, `…/thumbnail-800w.jpg`. A URL is valid only with its expiry and
an HMAC of key and expiry under the service's secret, so links can be shared for a while
and then stop working.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import quote

import httpx

from ._errors import NotFound, StorageUnavailable

SIGNED_URL_TTL_S: Final = 7 * 24 * 3600
#: Seconds a client should wait before retrying while the object store fails.
STORAGE_RETRY_AFTER_S: Final = 5
_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def thumbnail_keys(user_id: str, thumbnail_id: str) -> dict[str, str]:
    base = f"thumbnails/{_segment(user_id)}/{thumbnail_id}"
    return {
        "image": f"{base}/thumbnail.png",
        "image_400w": f"{base}/thumbnail-400w.jpg",
        "image_800w": f"{base}/thumbnail-800w.jpg",
    }


def _segment(value: str) -> str:
    """A user id as one safe path segment (Supabase ids are UUIDs; others are escaped)."""
    if re.fullmatch(r"[A-Za-z0-9_-]{1,128}", value):
        return value
    return "u-" + hashlib.sha256(value.encode()).hexdigest()[:32]


class Storage(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store (or overwrite: keys are deterministic) an object."""
        ...

    async def get(self, key: str) -> tuple[bytes, str]:
        """The object and its content type; 404 `NotFound` when missing."""
        ...

    async def signed_url(self, key: str, *, base_url: str | None) -> str:
        """A URL that serves the object for SIGNED_URL_TTL_S."""
        ...

    async def delete(self, keys: Sequence[str]) -> None:
        """Remove objects; keys with no object are fine."""
        ...


class LocalStorage:
    """Objects as files under `root`; writes are atomic (temp file + rename) and idempotent."""

    def __init__(self, root: Path, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self._secret = secret.encode()
        self._clock = clock

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or ".." in key.split("/"):
            raise NotFound("no such object")
        return self.root / key

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(self._put, path, data, content_type)
        except OSError as exc:  # a full disk, a read-only or missing volume, permissions
            raise StorageUnavailable(f"the object store cannot write ({exc.strerror})",
                                     retry_after=STORAGE_RETRY_AFTER_S) from exc

    @staticmethod
    def _put(path: Path, data: bytes, content_type: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def delete(self, keys: Sequence[str]) -> None:
        paths = [self._path(key) for key in keys]

        def unlink() -> None:
            for path in paths:
                path.unlink(missing_ok=True)

        try:
            await asyncio.to_thread(unlink)
        except OSError as exc:
            raise StorageUnavailable(f"the object store cannot delete ({exc.strerror})",
                                     retry_after=STORAGE_RETRY_AFTER_S) from exc

    async def get(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound("no such object") from None
        except OSError as exc:
            raise StorageUnavailable(f"the object store cannot read ({exc.strerror})",
                                     retry_after=STORAGE_RETRY_AFTER_S) from exc
        return data, content_type_of(key)

    def sign(self, key: str, expires: int) -> str:
        # The purpose is signed too: no other link of the service can pass for a file link.
        message = f"file\n{key}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    async def signed_url(self, key: str, *, base_url: str | None) -> str:
        expires = int(self._clock()) + SIGNED_URL_TTL_S
        path = f"/v1/files/{quote(key)}?expires={expires}&signature={self.sign(key, expires)}"
        return f"{base_url}{path}" if base_url else path

    def verify(self, key: str, expires: str, signature: str) -> bool:
        try:
            deadline = int(expires)
        except ValueError:
            return False
        if deadline < self._clock():
            return False
        return hmac.compare_digest(self.sign(key, deadline), signature)


def content_type_of(key: str) -> str:
    if key.endswith(".png"):
        return "image/png"
    if key.endswith((".jpg", ".jpeg")):
        return "image/jpeg"
    if key.endswith(".webp"):
        return "image/webp"
    return "application/octet-stream"


class SupabaseStorage:
    """Supabase Storage over its REST API: the key's first segment is the bucket
    (`thumbnails/{user}/{id}/thumbnail.png` → bucket `thumbnails`), uploads upsert, and
    links are Supabase's own signed URLs."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, service_key: str) -> None:
        self._http = http
        self._base = f"{base_url}/storage/v1"
        self._headers = {"Authorization": f"Bearer {service_key}", "apikey": service_key}

    @staticmethod
    def _split(key: str) -> tuple[str, str]:
        if not _KEY.match(key) or ".." in key.split("/") or "/" not in key:
            raise NotFound("no such object")
        bucket, _, path = key.partition("/")
        return bucket, quote(path)

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, url, headers={**self._headers,
                                                **kwargs.pop("headers", {})}, **kwargs)
        except httpx.HTTPError:
            raise StorageUnavailable("the object store could not be reached") from None
        if response.status_code in (400, 404) and method == "GET":
            raise NotFound("no such object")
        if response.status_code >= 400:
            raise StorageUnavailable(
                f"the object store refused the request (HTTP {response.status_code})"
            )
        return response

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        bucket, path = self._split(key)
        await self._request("POST", f"{self._base}/object/{bucket}/{path}", content=data,
                            headers={"Content-Type": content_type, "x-upsert": "true"})

    async def delete(self, keys: Sequence[str]) -> None:
        """Supabase Storage removes a bucket's objects by their paths in one request."""
        by_bucket: dict[str, list[str]] = {}
        for key in keys:
            bucket, _ = self._split(key)
            by_bucket.setdefault(bucket, []).append(key.partition("/")[2])
        for bucket, paths in by_bucket.items():
            await self._request("DELETE", f"{self._base}/object/{bucket}",
                                json={"prefixes": paths})

    async def get(self, key: str) -> tuple[bytes, str]:
        bucket, path = self._split(key)
        response = await self._request("GET", f"{self._base}/object/{bucket}/{path}")
        return response.content, response.headers.get("content-type", content_type_of(key))

    async def signed_url(self, key: str, *, base_url: str | None) -> str:
        bucket, path = self._split(key)
        response = await self._request(
            "POST", f"{self._base}/object/sign/{bucket}/{path}",
            json={"expiresIn": SIGNED_URL_TTL_S},
        )
        signed = response.json().get("signedURL") or response.json().get("signedUrl")
        if not isinstance(signed, str):
            raise StorageUnavailable("the object store did not return a signed URL")
        return f"{self._base}{signed}" if signed.startswith("/") else signed

