"""YAML config -> frozen dataclasses, validated against schemas/config.schema.json."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BASE_URL = "https://api.lightxeditor.com/external/api"


@dataclass(frozen=True)
class Limits:
    concurrency: int = 16
    requests_per_second: float | None = None


@dataclass(frozen=True)
class PollSettings:
    interval_s: float = 3.0
    max_attempts: int | None = None  # None: use the maxRetriesAllowed the API returns


@dataclass(frozen=True)
class ApiSettings:
    base_url: str = DEFAULT_BASE_URL
    key_env: str = "LIGHTX_API_KEY"
    timeout_s: float = 60.0


@dataclass(frozen=True)
class RetrySettings:
    failed_orders: int = 2      # resubmits of an order that ended `failed` (free)
    transient: int = 6          # attempts per request on transient errors
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass(frozen=True)
class OutputSettings:
    dir: Path = Path("outputs")
    filename: str = "{id}.jpg"


@dataclass(frozen=True)
class BudgetSettings:
    max_credits: int | None = None
    confirm_over: int = 50


@dataclass(frozen=True)
class ImageSettings:
    max_upload_bytes: int = 5_242_880
    remote_timeout_s: float = 30.0
    remote_max_bytes: int = 50 * 1024 * 1024


@dataclass(frozen=True)
class RunConfig:
    config_path: Path
    manifest_path: Path
    output: OutputSettings = field(default_factory=OutputSettings)
    limits: Limits = field(default_factory=Limits)
    poll: PollSettings = field(default_factory=PollSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    retries: RetrySettings = field(default_factory=RetrySettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    images: ImageSettings = field(default_factory=ImageSettings)
    prompt: str | None = None

    @property
    def state_dir(self) -> Path:
        return self.output.dir / ".pipeline"
