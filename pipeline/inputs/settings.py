"""The config's settings as frozen dataclasses: one per section, `RunConfig` over them all.

    cfg.limits.concurrency, cfg.state_dir, cfg.checkpoint_path

Read from YAML and checked by `pipeline.inputs.config.load_config`; nothing here reads a file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.inputs.delivery import DEFAULT_DISCLOSURE
from pipeline.inputs.schema import DEFAULT_KEY_ENV
from pipeline.lightx.tools import TOOLS
from pipeline.store.state_dirs import CHECKPOINT_NAME

DEFAULT_BASE_URL = "https://api.lightxeditor.com/external/api"
BASE_URL_ENV = "LIGHTX_BASE_URL"


@dataclass(frozen=True)
class Limits:
    concurrency: int = 16            # orders at the API at once
    transfers: int | None = None     # items uploading, downloading or ready to submit; None: = concurrency
    requests_per_second: float | None = None

    @property
    def workers(self) -> int:
        """Items in flight at once: the orders plus the transfers beside them."""
        return self.concurrency + (self.transfers or self.concurrency)


@dataclass(frozen=True)
class PollSettings:
    interval_s: float = 3.0
    max_attempts: int | None = None  # None: use the maxRetriesAllowed the API returns


@dataclass(frozen=True)
class ApiSettings:
    base_url: str = DEFAULT_BASE_URL
    key_env: str = DEFAULT_KEY_ENV
    timeout_s: float = 60.0


@dataclass(frozen=True)
class RetrySettings:
    failed_orders: int = 2      # resubmits of an order that ended `failed` (free)
    transient: int | None = None  # attempts per request on transient errors; None: budget_s decides
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    budget_s: float = 300.0     # seconds one request (API or storage) keeps retrying transient faults



@dataclass(frozen=True)
class OutputSettings:
    dir: Path = Path("outputs")
    filename: str = "{id}.jpg"
    # As the schema checked them; inputs/delivery.py reads them (disclosure_of, renditions_of).
    disclosure: dict = field(default_factory=lambda: dict(DEFAULT_DISCLOSURE))
    renditions: list = field(default_factory=list)
    public_url: str | None = None   # where output.dir is served: the store import files link there


@dataclass(frozen=True)
class StateSettings:
    dir: Path | None = None     # None: <output.dir>/.pipeline


@dataclass(frozen=True)
class StorageSettings:
    options: dict = field(default_factory=dict)  # passed to fsspec for every storage URL


@dataclass(frozen=True)
class StoreSettings:
    """How a store export is read and written back (inputs/stores, outputs/storefiles)."""
    format: str = "auto"             # auto | shopify | woocommerce | merchant-center | plain
    images: str = "first"            # first | all
    position: str = "after"          # after | first: where generated pictures go in the import files
    merchant_attribute: str = "lifestyle_image_link"
    rendition: str | None = None     # one of output.renditions: the import files link it instead (#23)


@dataclass(frozen=True)
class BudgetSettings:
    max_credits: int | None = None
    confirm_over: int = 50


@dataclass(frozen=True)
class QaSettings:
    min_fidelity: float = 0.7   # an output below it is held for review (docs/fidelity.md); 0: no gate
    max_rebuys: int = 1         # orders a rejected item may get again, per item


@dataclass(frozen=True)
class ImageSettings:
    max_upload_bytes: int = 5_242_880
    remote_timeout_s: float = 30.0          # one try at an http(s) image, in all
    remote_connect_timeout_s: float = 10.0  # its connection, the name lookup included
    remote_stall_timeout_s: float = 15.0    # its longest silence: before the answer, within the body
    remote_max_bytes: int = 50 * 1024 * 1024


@dataclass(frozen=True)
class RunConfig:
    config_path: Path
    manifest_path: Path | str        # a str is a storage URL (s3://cat/catalog.csv)
    output: OutputSettings = field(default_factory=OutputSettings)
    limits: Limits = field(default_factory=Limits)
    poll: PollSettings = field(default_factory=PollSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    retries: RetrySettings = field(default_factory=RetrySettings)
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    images: ImageSettings = field(default_factory=ImageSettings)
    state: StateSettings = field(default_factory=StateSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    qa: QaSettings = field(default_factory=QaSettings)
    # output.dir as a storage URL (s3://cat/out): outputs are written there, and output.dir is then
    # the local directory where the results table and report are made before they are uploaded.
    output_url: str | None = None
    prompt: str | None = None
    variants: tuple[Variant, ...] = ()  # empty: the one implicit variant (inputs/variants.variants_of)
    store: StoreSettings = field(default_factory=StoreSettings)
    columns: dict = field(default_factory=dict)  # a plain table's id/image/... columns, e.g. {id: sku}

    shard: Any = None  # plan.shards.Shard when run with --shard K/N; set by the caller, not the YAML

    @property
    def state_root(self) -> Path:
        """state.dir, else <output.dir>/.pipeline: every shard's state lives under it."""
        return self.state.dir if self.state.dir is not None else self.output.dir / ".pipeline"

    @property
    def state_dir(self) -> Path:
        """This run's checkpoint, lock, run log and fetched sources: one directory per shard."""
        return self.state_root / self.shard.name if self.shard is not None else self.state_root

    @property
    def results_name(self) -> str:
        """results.csv, or a shard's part of it (results.shard-K-of-N.csv) that `pipeline report` merges."""
        return f"results.{self.shard.name}.csv" if self.shard is not None else "results.csv"

    def with_shard(self, shard: Any) -> RunConfig:
        """This config for one shard; with output.dir in a bucket, the shard makes its part of the
        table and its previews in a local directory of its own, so shards never touch each other's."""
        if self.output_url is None:
            return dataclasses.replace(self, shard=shard)
        site = self.state_root / shard.name / SITE_DIR
        return dataclasses.replace(self, shard=shard, output=dataclasses.replace(self.output, dir=site))

    @property
    def checkpoint_path(self) -> Path:
        return self.state_dir / CHECKPOINT_NAME


# Config section -> dataclass; the schema's properties and these fields are kept equal by a test.
SECTIONS: dict[str, type] = {
    "output": OutputSettings, "limits": Limits, "poll": PollSettings, "api": ApiSettings,
    "retries": RetrySettings, "budget": BudgetSettings, "images": ImageSettings, "state": StateSettings,
    "storage": StorageSettings, "store": StoreSettings, "qa": QaSettings,
}
SITE_DIR = "site"  # under state.dir, when output.dir is a URL: the table and report before their upload


# -- variants: several pictures per item (parsed and checked in inputs/variants.py) ----------------

@dataclass(frozen=True)
class Step:
    tool: str
    fields: tuple[tuple[str, str | int], ...]  # (name, value as written), in config order

    @property
    def values(self) -> dict[str, str | int]:
        return dict(self.fields)


@dataclass(frozen=True)
class Variant:
    name: str
    steps: tuple[Step, ...]

    def credits(self) -> int:
        return sum(TOOLS[step.tool].credits for step in self.steps)


IMPLICIT = Variant("default", (Step("background-generator", (("prompt", "{prompt}"),)),))
