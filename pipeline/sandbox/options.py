"""SandboxOptions: how the local LightX double behaves, and the CLI flags that set it."""
from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from pipeline.errors import ConfigError

SANDBOX_KEY = "sandbox-key"
ROOT = "/external/api"  # where LightX serves its API, and so the sandbox too
PICTURE_FAULTS = ("silent", "stall", "5xx", "reset")  # how its store picture host can misbehave
OUTAGE_KINDS = ("5000", "503", "reset")  # what every API request gets during an --outage-s incident

_RATES = ("rate_429", "rate_5xx", "rate_reset", "rate_garbage", "rate_bad_status", "rate_5000",
          "rate_failed", "slow_order_rate", "rate_truncated", "rate_altered")


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SandboxOptions:
    """Behaviour of the sandbox; every field is also a ``pipeline sandbox --kebab-case`` flag."""

    api_key: str = _opt(SANDBOX_KEY, "x-api-key the sandbox accepts")
    processing_s: float = _opt(2.0, "seconds from submit until an order is active/failed")
    processing_jitter: float = _opt(0.0, "+- fraction of processing time, seeded")
    latency_s: float = _opt(0.0, "seconds added to every response")
    slow_order_rate: float = _opt(0.0, "share of orders that take --slow-order-s instead")
    slow_order_s: float = _opt(20.0, "processing time of slow orders (slower than 5 polls)")
    rate_429: float = _opt(0.0, "share of requests answered 429 with Retry-After")
    retry_after_s: float = _opt(1.0, "Retry-After value sent with 429s")
    rate_5xx: float = _opt(0.0, "share of requests answered 500/502/503")
    rate_reset: float = _opt(0.0, "share of requests whose connection is reset")
    rate_garbage: float = _opt(0.0, "share of requests answered 200 with HTML/garbage")
    rate_bad_status: float = _opt(0.0, "share of API requests answered 200 with statusCode 5001")
    rate_5000: float = _opt(0.0, "share of API requests (upload-url, submit, status) answered HTTP 200 with "
                                 "statusCode 5000 INTERNAL_SERVER_ERROR, before anything is done")
    outage_s: float = _opt(0.0, "an incident: once --outage-after API requests were answered, every API "
                                "request is answered as --outage-kind says for this many seconds")
    outage_after: int = _opt(0, "API requests answered before the --outage-s incident begins")
    outage_kind: str = _opt("5000", "what the incident answers: 5000 (HTTP 200, statusCode 5000), 503 (a "
                                    "gateway's HTML page) or reset (the connection dropped)")
    rate_failed: float = _opt(0.0, "share of orders that end 'failed' (free)")
    rate_truncated: float = _opt(0.0, "share of output downloads answered 200 with only the first half "
                                      "of the JPEG (right Content-Length, does not decode)")
    rate_altered: float = _opt(0.0, "share of first background-generator orders (of an image and prompt) whose "
                                    "product is altered: recolour, mirror, paint-over, squash (the ledger's "
                                    "orders say which, as `alteration`)")
    output_scale: float = _opt(1.0, "background-generator outputs this many times the input's size "
                                    "(an independent server's are 1.25x)")
    output_shift: float = _opt(0.0, "and moved by up to this share of their size, per order")
    output_quality: int = _opt(90, "JPEG quality of background-generator outputs")
    own_metadata: bool = _opt(False, "JPEG outputs carry their own EXIF, XMP packet and COM segment, "
                                     "as a real service's may")
    own_c2pa: bool = _opt(False, "with --own-metadata, also an APP11 C2PA (JUMBF) segment")
    fast: bool = _opt(False, "skip rendering: a background generator's output is its input picture, re-encoded "
                             "(with --output-scale/--output-shift/--output-quality and --rate-altered), "
                             "every other tool's one small fixed JPEG")
    seed: int = _opt(0, "seed of every random choice (faults, timings, textures are per image)")
    max_upload_bytes: int = _opt(5_242_880, "largest upload accepted, in bytes")
    upload_ttl_s: float = _opt(24 * 3600, "seconds an imageUrl stays valid")
    put_ttl_s: float = _opt(3599, "seconds a presigned PUT URL stays valid")
    max_retries_allowed: int = _opt(5, "maxRetriesAllowed reported at submit")
    avg_response_time_s: float | None = _opt(None, "avgResponseTimeInSec reported at submit "
                                              "(default: processing_s, as LightX reports its own time)")
    credit_limit: int | None = _opt(None, "credits available; further submits get 402 (default: unlimited)")
    # Ways a real API may lie or differ; the defaults keep the sandbox as it was.
    clock_skew_s: float = _opt(0.0, "seconds the sandbox's clock runs ahead of the client's (negative: "
                                    "behind); moves upload/URL expiry, X-Amz-Date, order and ledger times")
    expired_status_code: int = _opt(4003, "statusCode of the refusal of a submit whose imageUrl expired")
    expired_message: str = _opt("imageUrl has expired; upload the image again",
                                "message of the refusal of a submit whose imageUrl expired")
    refusals_http_200: bool = _opt(False, "answer request refusals (statusCode 4001-4005, 4013, expired) "
                                          "with HTTP 200 and status FAIL; 401 and 402 stay as they are")
    refuse_prompt: str | None = _opt(None, "refuse every submit whose textPrompt contains this text "
                                           "(any case) with statusCode 4013 PROMPT_NOT_ALLOWED "
                                           "(default: refuse none)")
    # A store's picture host (GET /pictures/<name>: sandbox/pictures.py), and how it misbehaves.
    pictures_fault: str | None = _opt(None, "the store picture host (GET /pictures/<name>, a drawn product "
                                            "per name) misbehaves: silent (never answers), stall (half the "
                                            "picture, then nothing), 5xx (503) or reset (default: it does not)")
    pictures_fault_first: int | None = _opt(None, "only the first N picture requests misbehave, then the host "
                                                  "recovers (default: every one)")

    def __post_init__(self) -> None:
        problems = [f"{name} must be between 0 and 1, got {getattr(self, name)}"
                    for name in _RATES if not 0.0 <= getattr(self, name) <= 1.0]
        for name in ("processing_s", "processing_jitter", "latency_s", "slow_order_s", "outage_s", "outage_after",
                     "retry_after_s", "upload_ttl_s", "put_ttl_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.processing_jitter > 1:
            problems.append(f"processing_jitter must be <= 1, got {self.processing_jitter}")
        if not 0.1 <= self.output_scale <= 4 or not 0 <= self.output_shift <= 0.2 or not 1 <= self.output_quality <= 100:
            problems.append("output_scale must be in 0.1..4, output_shift in 0..0.2, output_quality in 1..100")
        if self.max_upload_bytes <= 0:
            problems.append(f"max_upload_bytes must be > 0, got {self.max_upload_bytes}")
        if self.avg_response_time_s is not None and self.avg_response_time_s <= 0:
            problems.append("avg_response_time_s must be > 0")
        if self.credit_limit is not None and self.credit_limit < 0:
            problems.append(f"credit_limit must be >= 0, got {self.credit_limit}")
        if not math.isfinite(self.clock_skew_s):
            problems.append(f"clock_skew_s must be a finite number, got {self.clock_skew_s}")
        if self.expired_status_code == 2000:
            problems.append("expired_status_code must not be 2000, which means success")
        if not self.expired_message:
            problems.append("expired_message must not be empty")
        if self.refuse_prompt == "":
            problems.append("refuse_prompt must not be empty; leave it unset to refuse no prompt")
        if self.pictures_fault is not None and self.pictures_fault not in PICTURE_FAULTS:
            problems.append(f"pictures_fault must be one of {', '.join(PICTURE_FAULTS)}, got {self.pictures_fault!r}")
        if self.outage_kind not in OUTAGE_KINDS:
            problems.append(f"outage_kind must be one of {', '.join(OUTAGE_KINDS)}, got {self.outage_kind!r}")
        if self.pictures_fault_first is not None and self.pictures_fault_first < 0:
            problems.append(f"pictures_fault_first must be >= 0, got {self.pictures_fault_first}")
        if not self.api_key:
            problems.append("api_key must not be empty")
        if problems:
            raise ConfigError([f"sandbox: {p}" for p in problems])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one ``--kebab-case`` flag per SandboxOptions field; unset flags keep the defaults."""
    group = parser.add_argument_group("sandbox behaviour")
    for f in fields(SandboxOptions):
        default = f.default if f.default is not MISSING else None
        help_text = f.metadata.get("help", "")
        if "default:" not in help_text:
            help_text += f" (default: {default})"
        if f.type in ("bool", bool):
            group.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
            continue
        kind = {"int": int, "float": float, "str": str, "int | None": int, "float | None": float,
                "str | None": str}.get(str(f.type), str)
        group.add_argument(_flag(f.name), dest=f.name, type=kind, default=None,
                           metavar=f.name.upper(), help=help_text)


def options_from_args(args: argparse.Namespace) -> SandboxOptions:
    """SandboxOptions from parsed flags; flags left unset keep their defaults."""
    given = {f.name: getattr(args, f.name) for f in fields(SandboxOptions)
             if getattr(args, f.name, None) is not None}
    return SandboxOptions(**given)
