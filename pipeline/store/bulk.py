"""Bulk GETs of whole S3 objects through obstore (Rust's `object_store`), where it can serve.

    reader = bulk_reader(fs)          # None: keep to fsspec (not S3, obstore missing, options it lacks)
    got = reader.read_many(["cat/images/a.jpg", ...])   # one result per path: bytes, or the fault

s3fs spends about 7.7 ms of CPU per GET in aiobotocore's request handling; obstore does the same
request in Rust, for a fraction of that (docs/performance.md, "Bucket validation"). Only the bulk
reads of a catalog's images come here: listings, PUTs, HEADs and every other protocol stay with
fsspec (store/remote.py), the door for every URL.

The client is made from what the s3fs filesystem would use: endpoint from `storage.options`
(`endpoint_url`, `client_kwargs.endpoint_url`) or botocore's `AWS_ENDPOINT_URL(_S3)`, region and
credentials from botocore's own chain (environment, profiles, instance roles), asked again before
they expire. obstore's own retries are off: a transient fault comes back as a ConnectionError and
Remote retries it by store/retry.py, as every other store call. Faults are worded as the fsspec
ones are (FileNotFoundError, PermissionError, OSError).

`PIPELINE_BULK_READS=fsspec` in the environment keeps every read on fsspec.
"""
from __future__ import annotations

import asyncio
import os
import re
from datetime import datetime, timedelta, timezone
from typing import Any

AT_ONCE = 64   # GETs in flight at once
_STATUS = re.compile(r"\b([1-5]\d\d)\b")


def bulk_reader(fs: Any) -> BulkReader | None:
    """A lighter reader for this s3fs filesystem's objects, or None where fsspec must serve."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol not in ("s3", "s3a") or os.environ.get("PIPELINE_BULK_READS", "").lower() == "fsspec":
        return None
    if getattr(fs, "version_aware", False) or getattr(fs, "requester_pays", False) or \
            getattr(fs, "s3_additional_kwargs", None) or getattr(fs, "config_kwargs", None) or \
            getattr(fs, "kwargs", None):
        return None  # options obstore would not honour the way s3fs does: SSE-C, versions, profiles...
    try:
        import obstore  # noqa: F401
        import botocore.session
    except ImportError:
        return None
    cached = getattr(fs, "_pipeline_bulk", None)
    if cached is None:
        cached = BulkReader(fs, botocore.session.Session())
        fs._pipeline_bulk = cached  # fsspec keeps one filesystem per options: one client each
    return cached


class BulkReader:
    def __init__(self, fs: Any, session: Any):
        client_kwargs = dict(getattr(fs, "client_kwargs", None) or {})
        self.endpoint = (client_kwargs.get("endpoint_url") or getattr(fs, "endpoint_url", None)
                         or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
        self.region = client_kwargs.get("region_name") or session.get_config_variable("region") or "us-east-1"
        self.anon = bool(getattr(fs, "anon", False))
        self.session = session
        self.stores: dict[str, Any] = {}

    def _credentials(self) -> dict:
        """obstore's credential provider: botocore's chain, asked again within five minutes."""
        found = self.session.get_credentials()
        if found is None:
            from botocore.exceptions import NoCredentialsError
            raise NoCredentialsError()
        frozen = found.get_frozen_credentials()
        return {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key,
                "token": frozen.token, "expires_at": datetime.now(timezone.utc) + timedelta(minutes=5)}

    def _store(self, bucket: str) -> Any:
        if bucket not in self.stores:
            from obstore.store import S3Store
            config: dict[str, Any] = {"region": self.region}
            if self.endpoint:
                config["endpoint"] = self.endpoint
            if self.anon:
                config["skip_signature"] = True
            elif self.session.get_credentials() is None:
                from botocore.exceptions import NoCredentialsError
                raise NoCredentialsError()
            self.stores[bucket] = S3Store(
                bucket, config=config, client_options={"allow_http": True},
                retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=1)},
                credential_provider=None if self.anon else self._credentials)
        return self.stores[bucket]

    def read_many(self, paths: list[str]) -> list[bytes | BaseException]:
        """Whole objects `bucket/key`, AT_ONCE at a time: one result per path, bytes or the fault."""
        return asyncio.run(self._read_all(paths))

    async def _read_all(self, paths: list[str]) -> list[bytes | BaseException]:
        import obstore
        import obstore.exceptions
        from botocore.exceptions import BotoCoreError
        gate = asyncio.Semaphore(AT_ONCE)

        async def one(path: str) -> bytes:
            bucket, _, key = path.partition("/")
            async with gate:
                try:
                    got = await obstore.get_async(self._store(bucket), key)
                    return bytes(await got.bytes_async())
                except (obstore.exceptions.BaseError, BotoCoreError, OSError) as exc:
                    raise _worded(exc, path) from exc
        return await asyncio.gather(*(one(path) for path in paths), return_exceptions=True)


def _worded(exc: BaseException, path: str) -> BaseException:
    """An obstore fault as the exception an fsspec backend raises for it, so store/retry.py and
    store/remote.describe treat both alike: missing, denied, transient (ConnectionError) or other."""
    from obstore import exceptions as oe
    text = " ".join(str(exc).split()).split(" Debug source:")[0]  # obstore appends its Rust error tree
    if isinstance(exc, oe.NotFoundError):
        return FileNotFoundError(path)
    if isinstance(exc, (oe.PermissionDeniedError, oe.UnauthenticatedError)):
        return PermissionError(f"{path}: {text}")
    if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        return exc
    statuses = [int(s) for s in _STATUS.findall(text) if "status" in text.lower()]
    if any(s >= 500 or s in (408, 429) for s in statuses) or not statuses and any(
            word in text.lower() for word in ("connection", "timed out", "timeout", "reset", "error sending",
                                              "broken pipe", "incomplete", "body")):
        return ConnectionError(f"{path}: {text}")  # transient: retried by Remote
    if any(s == 403 for s in statuses):
        return PermissionError(f"{path}: {text}")
    if any(s == 404 for s in statuses):
        return FileNotFoundError(path)
    return OSError(f"{path}: {text}")
