"""URLs of object stores (s3://, gs://, az://, any fsspec protocol): one filesystem per protocol and
options, and every fault worded as one line before anything is spent.

    store = Remote.open("s3://cat/out", {"anon": False})
    store.put("mug.jpg", data, content_type="image/jpeg", metadata={"fingerprint": fp})
    store.sizes()        # {relative name: size} of everything under the root, in one listing

Following img2dataset and dlt: `fsspec.core.url_to_fs` picks the backend, `storage.options` from the
config is passed to it, credentials come from the backend's own chain (environment variables, its
usual files, instance roles), never from the YAML. S3-compatible servers (MinIO, R2, ...) are named
by botocore's standard `AWS_ENDPOINT_URL`.
"""
from __future__ import annotations

import contextlib
import hashlib
import posixpath
import re
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from pipeline.errors import ConfigError, OutputError
from pipeline.store.bulk import bulk_reader
from pipeline.store.retry import Backoff, transient

DISTRIBUTION = "lightx-pipeline"
# protocol -> (our extra, the package it installs)
EXTRAS = {"s3": ("s3", "s3fs"), "s3a": ("s3", "s3fs"), "gs": ("gcs", "gcsfs"), "gcs": ("gcs", "gcsfs"),
          "az": ("azure", "adlfs"), "abfs": ("azure", "adlfs"), "abfss": ("azure", "adlfs")}
# fsspec protocols that wrap another filesystem or are not storage; a manifest cannot name them.
NOT_STORAGE = frozenset({"blockcache", "cached", "filecache", "simplecache", "dir", "reference", "zip", "tar",
                         "libarchive", "jlab", "jupyter", "dask", "generic", "data", "memory", "http", "https"})
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
CREDENTIAL_HINTS = {"s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                    "s3a": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                    "gs": "GOOGLE_APPLICATION_CREDENTIALS", "gcs": "GOOGLE_APPLICATION_CREDENTIALS",
                    "az": "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY",
                    "abfs": "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY",
                    "abfss": "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY"}
# Option names that carry a secret: credentials come from the environment, never from the YAML.
SECRET_OPTIONS = re.compile(r"(?i)(secret|password|token|credential|account_key|sas|connection_string|^key$)")


class StorageError(ConfigError):
    """A URL that cannot be used: unknown scheme, backend missing, bucket or object missing, no access."""


class StorageBusy(OutputError):
    """The store answered with transient faults (503 SlowDown, 5xx, resets, timeouts) for the whole
    retry budget: nothing is wrong with the URL, and a later run may well succeed."""

    def __init__(self, message: str, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


def busy_or(exc: BaseException, message: str, other: type[Exception]) -> Exception:
    """StorageBusy for a transient fault, else `other` (StorageError, OutputError) with `message`."""
    retry, after = transient(exc)
    return StorageBusy(message, after) if retry else other(message)


def scheme_of(text: str) -> str | None:
    """`s3` for "s3://b/k", None for a local path (a Windows drive letter is not a scheme)."""
    match = _SCHEME.match(text)
    return match[1].lower() if match else None


def is_remote(text: str) -> bool:
    """True for a URL that fsspec reads: any scheme but http(s) (fetched by plan/fetch.py) and file://."""
    scheme = scheme_of(text)
    return scheme is not None and scheme not in ("http", "https", "file")


def local_path(text: str) -> str:
    """A file:// URL as the path it names; anything else as it is."""
    return text[7:] if scheme_of(text) == "file" else text


def join(base: str, relative: str) -> str:
    """`relative` resolved against the directory URL `base`: s3://cat + images/a.jpg -> s3://cat/images/a.jpg."""
    scheme = scheme_of(base)
    rest = base[len(scheme) + 3:]
    return f"{scheme}://{posixpath.normpath(posixpath.join(rest, relative))}"


def parent(url: str) -> str:
    scheme = scheme_of(url)
    return f"{scheme}://{posixpath.dirname(url[len(scheme) + 3:].rstrip('/'))}"


def scheme_problem(url: str) -> str | None:
    """Why `url`'s scheme cannot be used (unknown, not storage, backend not installed), or None."""
    scheme = scheme_of(url) or ""
    try:
        from fsspec.registry import known_implementations, registry
    except ImportError:  # fsspec comes with every storage extra
        known_implementations, registry = {}, {}
    if scheme in EXTRAS:
        extra, package = EXTRAS[scheme]
        if known_implementations and (scheme in registry or _importable(known_implementations[scheme]["class"])):
            return None
        return f"{scheme}:// needs the {package} backend: pip install '{DISTRIBUTION}[{extra}]'"
    if scheme in NOT_STORAGE or (scheme not in known_implementations and scheme not in registry):
        return (f"unknown URL scheme '{scheme}://': use a local path, an http(s):// URL, s3://, gs://, az:// "
                f"or another fsspec storage URL")
    if scheme in registry or _importable(known_implementations[scheme]["class"]):
        return None
    hint = known_implementations[scheme].get("err") or f"install the fsspec backend for {scheme}://"
    return f"{scheme}:// backend is not installed ({hint})"


@lru_cache(maxsize=None)
def _importable(dotted: str) -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec(dotted.rsplit(".", 1)[0].split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def options_problems(options: Mapping[str, Any]) -> list[str]:
    """storage.options names that look like credentials: they belong in the environment."""
    found = []

    def walk(mapping: Mapping[str, Any], where: str) -> None:
        for name, value in mapping.items():
            if SECRET_OPTIONS.search(str(name)):
                found.append(f"{where}.{name}: credentials must not be in the config; the backend reads them "
                             f"from the environment or its usual files (e.g. AWS_ACCESS_KEY_ID, "
                             f"GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT_KEY)")
            elif isinstance(value, Mapping):
                walk(value, f"{where}.{name}")
    walk(options, "storage.options")
    return found


def describe(exc: BaseException, url: str) -> str:
    """One line for a backend fault on `url`, never with a credential in it."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if name in ("NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError") or \
            "credentials" in text.lower() and "unable" in text.lower():
        return (f"{url}: no credentials for {scheme_of(url)}:// (set them in the environment, e.g. "
                f"{CREDENTIAL_HINTS.get(scheme_of(url) or '', 'as its backend documents')}, or the backend's "
                f"usual files)")
    if isinstance(exc, FileNotFoundError):
        if is_missing_bucket(exc):
            return f"{url}: the bucket does not exist ({text})"
        return f"{url}: not found"
    if isinstance(exc, PermissionError):
        return f"{url}: access denied ({text or name})"
    if name in ("EndpointConnectionError", "ClientConnectorError", "ConnectTimeoutError", "ReadTimeoutError"):
        return f"{url}: cannot reach the storage endpoint ({text})"
    return f"{url}: {name}: {text}" if text else f"{url}: {name}"


@lru_cache(maxsize=1)
def faults() -> tuple[type[BaseException], ...]:
    """The exception types a backend raises for a storage fault (not a bug of ours). botocore is
    imported here, not at start-up: it costs a quarter of a second a run without a bucket never needs."""
    found: tuple[type[BaseException], ...] = (OSError, ValueError, RuntimeError, TimeoutError)
    with contextlib.suppress(ImportError):
        from botocore.exceptions import BotoCoreError, ClientError
        found += (BotoCoreError, ClientError)
    with contextlib.suppress(ImportError):
        import aiohttp  # gcsfs and adlfs may let its errors through
        found += (aiohttp.ClientError,)
    return found


class Remote:
    """A directory in an object store: names relative to its root, one filesystem for all of them.
    Every call is retried on transient faults (store/retry.py) for `backoff.budget_s` seconds."""

    def __init__(self, fs: Any, url: str, backoff: Backoff | None = None):
        self.fs = fs
        self.url = url.rstrip("/")
        self.root = fs._strip_protocol(self.url).rstrip("/")
        self.backoff = backoff or Backoff()

    def _retried(self, action):
        return self.backoff.call(action, faults())

    @classmethod
    def open(cls, url: str, options: Mapping[str, Any] | None = None, retries: Any = None) -> Remote:
        """`retries`: the config's retries section (budget and backoff); None for the defaults."""
        if problem := scheme_problem(url):
            raise StorageError(f"{url}: {problem}")
        from fsspec.core import url_to_fs
        try:
            # fsspec keeps one instance per protocol and options: every folder shares its connections.
            fs, _ = url_to_fs(url, **dict(options or {}))
        except ImportError as exc:
            raise StorageError(f"{url}: {exc}") from None
        except TypeError as exc:
            raise StorageError(f"{url}: storage.options: {exc}") from None
        return cls(fs, url, Backoff.of(retries))

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}"

    def read(self, name: str = "") -> bytes:
        try:
            return self._retried(lambda: self.fs.cat_file(self.path(name)))
        except faults() as exc:
            raise busy_or(exc, describe(exc, self.url_of(name) if name else self.url), StorageError) from None

    def listing(self) -> dict[str, tuple[int, int]]:
        """{name relative to the root: (size, version)} of every object below it: one listing, paged by
        the backend; `version` is what changes when the object does (from its ETag, else its modification
        time), as the integer the checkpoint's stat cache keeps where a file's mtime goes.
        A root that does not exist yet is empty; a bucket that does not exist is a StorageError."""
        def find() -> dict:
            self.fs.invalidate_cache()
            return self.fs.find(self.root, detail=True)
        try:
            found = self._retried(find)
        except FileNotFoundError as exc:
            if is_missing_bucket(exc):
                raise StorageError(describe(exc, self.url)) from None
            found = {}
        except faults() as exc:
            raise busy_or(exc, describe(exc, self.url), StorageError) from None
        cut = len(self.root) + 1
        return {path[cut:]: (int(info.get("size") or 0), _version(info)) for path, info in found.items()
                if info.get("type") != "directory" and path.startswith(self.root + "/")}

    def children(self) -> dict[str, tuple[int, int]]:
        """As `listing`, for the objects directly in the root only (one folder of a catalog's images)."""
        def ls() -> list:
            self.fs.invalidate_cache(self.root)
            return self.fs.ls(self.root, detail=True)
        try:
            found = self._retried(ls)
        except FileNotFoundError as exc:
            if is_missing_bucket(exc):
                raise StorageError(describe(exc, self.url)) from None
            found = []
        except faults() as exc:
            raise busy_or(exc, describe(exc, self.url), StorageError) from None
        return {info["name"].rsplit("/", 1)[-1]: (int(info.get("size") or 0), _version(info)) for info in found
                if info.get("type") != "directory"}

    def sizes(self) -> dict[str, int]:
        """{name relative to the root: size}, from one `listing`."""
        return {name: size for name, (size, _) in self.listing().items()}

    def read_many(self, names: list[str]) -> dict[str, bytes | BaseException]:
        """Whole objects, fetched concurrently (S3 through obstore where it serves, store/bulk.py; else
        by the fsspec backend): {name: bytes, or the fault}."""
        reader = bulk_reader(self.fs)

        def fetch(todo: list[str]) -> list[bytes | BaseException]:
            paths = [self.path(name) for name in todo]
            if reader is not None:
                return reader.read_many(paths)
            got = self.fs.cat(paths, on_error="return")
            return [got.get(path, FileNotFoundError(path)) for path in paths]
        return self._each(names, fetch)

    def read_ranges(self, wanted: list[tuple[str, int, int]]) -> dict[str, bytes | BaseException]:
        """Byte ranges [start, end) of several objects at once: {name: bytes, or the fault}."""
        ranges = {name: (start, end) for name, start, end in wanted}

        def fetch(todo: list[str]) -> list[bytes | BaseException]:
            return self.fs.cat_ranges([self.path(n) for n in todo], [ranges[n][0] for n in todo],
                                      [ranges[n][1] for n in todo], on_error="return")
        return self._each([name for name, _, _ in wanted], fetch)

    def _each(self, names: list[str], fetch) -> dict[str, bytes | BaseException]:
        """`fetch(names)` -> one result per name, bytes or fault; the names that failed transiently
        are fetched again, together, while the retry budget lasts."""
        out: dict[str, bytes | BaseException] = {}
        todo, started, tried = list(names), time.monotonic(), 0
        while todo:
            tried += 1
            try:
                got = fetch(todo)
            except faults() as exc:
                got = [exc] * len(todo)
            again, delay = [], 0.0
            for name, data in zip(todo, got):
                out[name] = data
                if isinstance(data, BaseException) and (wait := self.backoff.wait(data, tried, started)) is not None:
                    again.append(name)
                    delay = max(delay, wait)
            if again:
                time.sleep(delay)
            todo = again
        return out

    def put(self, name: str, data: bytes, *, content_type: str,
            metadata: Mapping[str, str] | None = None, once: bool = False) -> None:
        """One whole object: an object store's PUT is atomic, so readers never see half of it.
        Retried while the budget lasts (`once`: tried once), then StorageBusy if the faults were
        transient, OutputError if not (no bucket, no credentials, access denied)."""
        def pipe() -> None:
            self.fs.pipe_file(self.path(name), data, **_put_options(self.fs, content_type, metadata))
        try:
            pipe() if once else self._retried(pipe)
        except faults() as exc:
            raise busy_or(exc, f"cannot write {describe(exc, self.url_of(name))}", OutputError) from None

    def remove(self, names: Iterable[str]) -> None:
        paths = [self.path(name) for name in names]
        if paths:
            with contextlib.suppress(*faults()):  # a stale object left behind costs only storage
                self._retried(lambda: self.fs.rm(paths))

    def metadata(self, name: str) -> dict[str, str]:
        """The object's user metadata (where the backend keeps it), {} if none or unknown."""
        try:
            if hasattr(self.fs, "metadata"):  # s3fs: a HEAD
                return dict(self._retried(lambda: self.fs.metadata(self.path(name))) or {})
            info = self._retried(lambda: self.fs.info(self.path(name)))
        except faults():
            return {}
        return dict(info.get("metadata") or {})

    def check_writable(self) -> None:
        """Before anything is spent: write and remove a tiny object, so a missing bucket, missing
        credentials or a read-only role fail the run here, not after paid orders."""
        probe = ".pipeline-write-test"
        self.put(probe, b"", content_type="text/plain")
        self.remove([probe])


def _version(info: Mapping[str, Any]) -> int:
    """What identifies this version of an object in a listing (ETag, generation or modification
    time), as a 60-bit integer."""
    found = next((f"{key}={info[key]}" for key in ("ETag", "etag", "generation", "md5Hash", "LastModified",
                                                     "last_modified", "mtime", "updated") if info.get(key)), "")
    return int(hashlib.sha256(found.encode()).hexdigest()[:15], 16)


def is_missing_bucket(exc: BaseException) -> bool:
    """A FileNotFoundError for the bucket itself, not for one object in it (the backends say so in words)."""
    return isinstance(exc, FileNotFoundError) and "bucket" in str(exc).lower()


def _put_options(fs: Any, content_type: str, metadata: Mapping[str, str] | None) -> dict:
    """Content-Type and user metadata in the spelling of each backend's pipe_file."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("s3", "s3a"):
        return {"ContentType": content_type, **({"Metadata": dict(metadata)} if metadata else {})}
    if protocol in ("gs", "gcs"):
        return {"content_type": content_type, **({"metadata": dict(metadata)} if metadata else {})}
    if protocol in ("az", "abfs", "abfss"):
        from azure.storage.blob import ContentSettings  # adlfs depends on it
        return {"content_settings": ContentSettings(content_type=content_type),
                **({"metadata": dict(metadata)} if metadata else {})}
    return {}



def forget_filesystems() -> None:
    """Drop every cached filesystem: the next URL opens a new client, which reads the environment
    again (tests switch credentials and endpoints)."""
    from fsspec.registry import registry
    for cls in registry.values():
        cls.clear_instance_cache()
