"""Where a call's files are kept: a folder on the local disk (the default) or an S3-compatible bucket.

    store = LocalObjects(Path("/var/lib/voxpulse/insights"))        # <folder>/<call_id>/<name>, 0600
    store = S3Objects(S3Settings(bucket="calls", endpoint="https://s3.example", region="eu-central-1",
                                 access_key_id=..., secret_access_key=...))
    await store.put("RM_x/recording.ogg", data)
    await store.get("RM_x/recording.ogg", start=100, end=199)     # bytes 100-199 (inclusive)
    await store.delete_prefix("RM_x/")                              # the call's files; returns how many

Keys are ``<call_id>/<name>``; a call id is one safe path segment (``call_id_for``), checked by the
callers. The S3 client signs each request itself (AWS Signature Version 4 over httpx, path-style
URLs, so any S3-compatible server works); its credentials come from the environment only
(:func:`s3_from_env`). Every failure to reach or use the bucket is an :class:`ObjectStoreError`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import quote
from xml.etree import ElementTree

import httpx

__all__ = ["LocalObjects", "ObjectStore", "ObjectStoreError", "S3Objects", "S3Settings", "sign", "write_file"]


class ObjectStoreError(OSError):
    """The object store could not be reached or refused a request (the receiver answers 503)."""


class ObjectStore(Protocol):
    """The few operations the receiver, retention, erasure and the console's player need."""

    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there (an upload repeated is the same)."""

    async def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes | None:
        """Bytes ``start``..``end`` (inclusive; None: from the start / to the end) of ``key``; None when
        there is no such object."""

    async def size(self, key: str) -> int | None:
        """The object's length in bytes, or None when there is none."""

    async def list_prefix(self, prefix: str) -> list[str]:
        """The keys that start with ``prefix``, sorted."""

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; returns how many there were."""

    async def aclose(self) -> None:
        """Release connections."""


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` atomically, readable by the owner only (the audio and transcript are personal data)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class LocalObjects:
    """``<folder>/<key>``: today's layout (``<folder>/<call_id>/recording.ogg``), files 0600, atomic."""

    folder: Path

    def path(self, key: str) -> Path:
        return self.folder / key

    async def put(self, key: str, data: bytes) -> None:
        write_file(self.path(key), data)

    async def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes | None:
        path = self.path(key)
        if not path.is_file():
            return None
        with path.open("rb") as f:
            f.seek(start or 0)
            return f.read() if end is None else f.read(max(0, end + 1 - (start or 0)))

    async def size(self, key: str) -> int | None:
        path = self.path(key)
        return path.stat().st_size if path.is_file() else None

    async def list_prefix(self, prefix: str) -> list[str]:
        folder, _, _ = prefix.rpartition("/")
        where = self.folder / folder if folder else self.folder
        if not where.is_dir():
            return []
        keys = (str(p.relative_to(self.folder)) for p in where.rglob("*") if p.is_file())
        return sorted(k for k in keys if k.startswith(prefix))

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self.list_prefix(prefix)
        for key in keys:
            self.path(key).unlink(missing_ok=True)
        folder = self.folder / prefix.rstrip("/")
        if prefix.endswith("/") and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        return len(keys)

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    #: the server's base URL (``https://s3.eu-central-1.amazonaws.com``, ``http://127.0.0.1:8333``)
    endpoint: str
    region: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    #: seconds for connecting and for each read
    timeout_s: float = 10.0


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sign(s: S3Settings, method: str, key: str, query: Mapping[str, str], headers: Mapping[str, str],
         body: bytes, now: dt.datetime | None = None) -> tuple[str, dict[str, str]]:
    """The URL and headers of one request to ``<endpoint>/<bucket>/<key>``, signed with AWS Signature
    Version 4 (the whole body's SHA-256 in ``x-amz-content-sha256``)."""
    base = s.endpoint.rstrip("/")
    t = now or dt.datetime.now(dt.UTC)
    stamp, day = t.strftime("%Y%m%dT%H%M%SZ"), t.strftime("%Y%m%d")
    path = "/" + quote(s.bucket, safe="") + ("/" + quote(key, safe="/~") if key else "")
    canonical_query = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(query.items()))
    signed = {"host": httpx.URL(base).netloc.decode("ascii"), "x-amz-content-sha256": _sha256(body),
              "x-amz-date": stamp, **{k.lower(): v.strip() for k, v in headers.items()}}
    names = ";".join(sorted(signed))
    canonical = "\n".join([method, path, canonical_query, "".join(f"{k}:{signed[k]}\n" for k in sorted(signed)),
                           names, signed["x-amz-content-sha256"]])
    scope = f"{day}/{s.region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, _sha256(canonical.encode())])
    k = _hmac(("AWS4" + s.secret_access_key).encode(), day)
    for part in (s.region, "s3", "aws4_request"):
        k = _hmac(k, part)
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    out = {name: value for name, value in signed.items() if name != "host"}
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={s.access_key_id}/{scope}, "
                            f"SignedHeaders={names}, Signature={signature}")
    return base + path + (f"?{canonical_query}" if canonical_query else ""), out


class S3Objects:
    """An S3 bucket over path-style URLs (``<endpoint>/<bucket>/<key>``), each request SigV4-signed."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._client = httpx.AsyncClient(timeout=settings.timeout_s)

    def __repr__(self) -> str:
        return f"S3Objects(bucket={self.settings.bucket!r}, endpoint={self.settings.endpoint!r})"

    async def _request(self, method: str, key: str, *, query: Mapping[str, str] | None = None,
                       headers: Mapping[str, str] | None = None, body: bytes = b"",
                       ok: tuple[int, ...] = (200,)) -> httpx.Response:
        url, signed = sign(self.settings, method, key, query or {}, headers or {}, body)
        try:
            resp = await self._client.request(method, url, headers=signed, content=body)
        except httpx.HTTPError as exc:
            raise ObjectStoreError(f"S3 {self.settings.endpoint} unreachable: {exc!r}") from exc
        if resp.status_code not in ok:
            raise ObjectStoreError(f"S3 {method} {self.settings.bucket}/{key}: HTTP {resp.status_code} "
                                   f"{_s3_error(resp.content)}")
        return resp

    async def put(self, key: str, data: bytes) -> None:
        await self._request("PUT", key, body=data)

    async def get(self, key: str, start: int | None = None, end: int | None = None) -> bytes | None:
        headers = {}
        if start is not None or end is not None:
            headers["range"] = f"bytes={start or 0}-{'' if end is None else end}"
        resp = await self._request("GET", key, headers=headers, ok=(200, 206, 404, 416))
        if resp.status_code == 404:
            return None
        return b"" if resp.status_code == 416 else resp.content

    async def size(self, key: str) -> int | None:
        resp = await self._request("HEAD", key, ok=(200, 404))
        return int(resp.headers["content-length"]) if resp.status_code == 200 else None

    async def list_prefix(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix, **({"continuation-token": token} if token else {})}
            resp = await self._request("GET", "", query=query)
            root = ElementTree.fromstring(resp.content)
            ns = re.match(r"\{.*\}", root.tag)
            p = ns.group(0) if ns else ""
            keys += [k.text or "" for k in root.iter(f"{p}Key")]
            token = root.findtext(f"{p}NextContinuationToken")
            if root.findtext(f"{p}IsTruncated") != "true" or not token:
                return sorted(keys)

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self.list_prefix(prefix)
        for key in keys:
            await self._request("DELETE", key, ok=(200, 204, 404))
        return len(keys)

    async def aclose(self) -> None:
        await self._client.aclose()


def _s3_error(body: bytes) -> str:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return ""
    return " ".join(filter(None, (root.findtext("Code"), root.findtext("Message"))))
