"""The exception tree. Every error the library raises on purpose is a PipelineError.

    PipelineError                 run-level; carries the process exit code
    ├── ConfigError        (2)    bad config, manifest, image or command line; nothing was sent
    │   └── InvalidItems          items that cannot run, and no skip_invalid (--skip-invalid)
    ├── LockError         (75)    another run holds this checkpoint
    ├── CheckpointError    (1)    the checkpoint is corrupt, foreign or unwritable
    ├── OutputError        (1)    the output directory cannot be written (read-only, disk full)
    └── FatalApiError      (1)    the API refused the whole run
        ├── AuthError             key missing or rejected
        ├── CreditsError          no credits left
        ├── ApiUnreachable        the run's first API call got no HTTP answer at all
        └── WrongApi              the first API calls got 404 or a non-LightX answer: a wrong base URL

    Ctrl-C and SIGTERM are not errors: the run stops new work, saves, and exits 130.

    ApiError                      one request's failure, raised by client.py only
    ├── TransientError            worth retrying: reset, timeout, 429, 5xx, garbage body
    │   └── ForeignAnswer         JSON, but not LightX's (no statusCode): a wrong URL if it comes first
    ├── ItemError                 this image or prompt was rejected; the item fails, the run goes on
    │   └── Refused               a well-formed LightX answer with statusCode != 2000: the API said no
    └── Stopped                   the run is stopping (Ctrl-C, SIGTERM): no further attempt is made

    images.ImageError, FetchError   a source image cannot be read or fetched; the item fails

Only client.py (the LightX API, on lightx/wire.py) and plan/fetch.py (remote source images, on
aiohttp) turn transport exceptions into these; stages never catch them.
"""
from __future__ import annotations


class PipelineError(Exception):
    """A run-level error with a one-line message and an exit code."""

    exit_code = 1


class ConfigError(PipelineError):
    """Invalid config, manifest, image or usage; ``problems`` holds one line per problem."""

    exit_code = 2

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class InvalidItems(ConfigError):
    """Some items cannot run and skipping them was not asked for; ``items`` and ``invalid`` count them."""

    def __init__(self, problems: list[str], *, items: int, invalid: int):
        self.items, self.invalid = items, invalid  # valid items, and rows that cannot run
        super().__init__(problems)


class LockError(PipelineError):
    exit_code = 75


class CheckpointError(PipelineError):
    exit_code = 1


class OutputError(PipelineError):
    exit_code = 1


class FatalApiError(PipelineError):
    exit_code = 1


class AuthError(FatalApiError):
    pass


class CreditsError(FatalApiError):
    pass


class ApiUnreachable(FatalApiError):
    pass


class WrongApi(FatalApiError):
    pass


class ApiError(Exception):
    """One failed request: HTTP status, LightX statusCode and message, never the key."""

    def __init__(self, message: str, *, http_status: int | None = None,
                 status_code: int | None = None, retry_after: float | None = None):
        self.http_status = http_status
        self.status_code = status_code
        self.retry_after = retry_after
        super().__init__(message)


class TransientError(ApiError):
    pass


class ItemError(ApiError):
    pass


class ForeignAnswer(TransientError):
    pass


class Refused(ItemError):
    pass


class Stopped(ApiError):
    pass


class FetchError(Exception):
    """A remote image could not be fetched; the message is one human line.

    `transient`: a later try may succeed (refused or reset connection, no answer, 5xx, 429, 408);
    `retry_after`: the seconds the server asked for; `host_down`: the host itself cannot be reached
    (its name does not resolve), so its other pictures need not be tried."""

    def __init__(self, message: str, *, transient: bool = False, retry_after: float | None = None,
                 host_down: bool = False):
        super().__init__(message)
        self.transient, self.retry_after, self.host_down = transient, retry_after, host_down
