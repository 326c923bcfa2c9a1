"""The sandbox's memory: upload slots, orders, rendered outputs. No HTTP here."""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import random
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from PIL import Image, ImageOps

from pipeline.lightx.tools import TOOLS, Tool
from pipeline.sandbox import alter, painter
from pipeline.sandbox.handlers import HANDLERS, Output
from pipeline.sandbox.metadata import with_own_metadata
from pipeline.sandbox.ledger import BACKGROUND_GENERATOR, Ledger, OrderRecord, submit_key
from pipeline.sandbox.options import SandboxOptions
from pipeline.sandbox.presign import EXTENSIONS, PutGrant, amz_date

RENDER_CACHE_SIZE = 32
FAST_CACHE_SIZE = 256         # fast mode's outputs, by input and options (a few KB each)
FAST_INLINE_BYTES = 64 * 1024  # fast mode makes a smaller input's output on the event loop


@dataclass
class UploadSlot:
    grant: PutGrant
    image_url: str
    created: float
    data: bytes | None = None
    sha256: str | None = None

    def put_expired(self, now: float) -> bool:
        return now > self.created + self.grant.expires

    def url_expired(self, now: float, ttl: float) -> bool:
        return now > self.created + ttl


@dataclass
class Order:
    record: OrderRecord
    data: bytes  # the bytes as they were at submit, should the slot be PUT again later
    values: dict[str, Any] = field(default_factory=dict)  # the tool's fields, named as in the registry
    images: dict[str, bytes] = field(default_factory=dict)  # bytes of its image-valued fields, likewise


class SandboxState:
    """All mutable state of one sandbox; used from its event loop only."""

    def __init__(self, options: SandboxOptions, clock: Callable[[], float] = time.time):
        self.options = options
        self.base_clock = clock
        self.ledger = Ledger(clock=self.clock)
        self.fault_rng = random.Random(options.seed)
        self.secret = secrets.token_bytes(32)
        self.slots: dict[str, UploadSlot] = {}        # by object key
        self.slots_by_url: dict[str, UploadSlot] = {}
        self.orders: dict[str, Order] = {}
        self.order_seq = 0
        self._renders: OrderedDict[str, asyncio.Future] = OrderedDict()
        self._fast_outputs: OrderedDict[str, Output] = OrderedDict()

    def clock(self) -> float:
        """The sandbox's time: the base clock plus the current ``clock_skew_s``, read on every call."""
        return self.base_clock() + self.options.clock_skew_s

    def set_options(self, **changes) -> SandboxOptions:
        new = dataclasses.replace(self.options, **changes)
        if new.seed != self.options.seed:
            self.fault_rng = random.Random(new.seed)
        self.options = new
        return new

    # uploads

    def create_slot(self, size: int, content_type: str, host: str, origin: str) -> UploadSlot:
        now = self.clock()
        key = f"apikey/{secrets.token_hex(16)}.{EXTENSIONS[content_type]}"
        expires = round(self.options.put_ttl_s)
        grant = PutGrant(key=key, size=size, content_type=content_type, host=host,
                         amz_date=amz_date(now), expires=expires)
        slot = UploadSlot(grant=grant, image_url=f"{origin}/cdn/{key}", created=now)
        self.slots[key] = slot
        self.slots_by_url[slot.image_url] = slot
        return slot

    def store_upload(self, slot: UploadSlot, body: bytes) -> None:
        slot.data = body
        slot.sha256 = hashlib.sha256(body).hexdigest()
        self.ledger.uploads_completed += 1

    def age_uploads(self, seconds: float) -> int:
        """Pretend every upload slot was created ``seconds`` earlier (PUT URLs and imageUrls)."""
        for slot in self.slots.values():
            slot.created -= seconds
        return len(self.slots)

    # orders

    async def decodes(self, data: bytes) -> bool:
        """Whether the image can be read; in fast mode its header is enough."""
        if self.options.fast:
            return _decodes(data, full=False)
        return await asyncio.get_running_loop().run_in_executor(None, _decodes, data, True)

    def submit(self, data: bytes, sha256: str, prompt: str, decodes: bool, tool: Tool = TOOLS[BACKGROUND_GENERATOR],
               values: dict[str, Any] | None = None, images: dict[str, UploadSlot] | None = None) -> OrderRecord:
        """Create an order; its outcome and processing time are drawn now, from the seed.

        ``values`` are the tool's fields by registry name, ``images`` the uploads its image fields name."""
        values, images = {**({"prompt": prompt} if prompt else {}), **(values or {})}, images or {}
        opts = self.options
        self.order_seq += 1
        rng = random.Random(f"{opts.seed}:order:{self.order_seq}")
        failed = rng.random() < opts.rate_failed
        slow = rng.random() < opts.slow_order_rate
        took = opts.slow_order_s if slow else opts.processing_s
        took *= 1 + opts.processing_jitter * (2 * rng.random() - 1)
        failed = failed or not decodes
        first = self.ledger.submits[submit_key(sha256, prompt)] == 0
        altered = (opts.rate_altered > 0 and tool.name == BACKGROUND_GENERATOR and first
                   and rng.random() < opts.rate_altered)
        now = self.clock()
        api = {f.name: f.api for f in tool.fields}
        record = OrderRecord(order_id=secrets.token_hex(13)[:25], sha256=sha256, prompt=prompt,
                             created=now, done_at=now + max(0.0, took),
                             outcome="failed" if failed else "active", tool=tool.name,
                             fields={api[k]: v for k, v in values.items() if k not in images and k != "prompt"},
                             images={api[k]: slot.sha256 for k, slot in images.items()},
                             alteration=rng.choice(alter.ALTERATIONS) if altered else None)
        self.orders[record.order_id] = Order(record=record, data=data, values=values,
                                             images={k: slot.data for k, slot in images.items()})
        self.ledger.record_order(record)
        return record

    def poll(self, order: Order) -> str:
        self.ledger.record_poll(order.record, self.options.max_retries_allowed)
        return order.record.status(self.clock())

    def out_of_credits(self) -> bool:
        limit = self.options.credit_limit
        return limit is not None and self.ledger.committed() >= limit

    async def render(self, order: Order) -> Output:
        """The order's output, made once per (tool, input, values) and cached; its sha256 is recorded."""
        if self.options.fast:
            output = await self._fast(order)
        else:
            record, opts = order.record, self.options
            realistic = record.tool == BACKGROUND_GENERATOR and (
                record.alteration or opts.output_scale != 1 or opts.output_shift or opts.output_quality != 90)
            key = (f"{record.key}|{record.alteration}|{opts.output_scale}|{opts.output_shift}|{opts.output_quality}"
                   if realistic else record.key)
            future = self._renders.get(key)
            if future is None:
                loop = asyncio.get_running_loop()
                if realistic:
                    future = loop.run_in_executor(None, _realistic, order, opts)
                else:
                    handler = HANDLERS[order.record.tool]
                    future = loop.run_in_executor(None, handler, order.data, order.values, order.images)
                self._renders[key] = future
                while len(self._renders) > RENDER_CACHE_SIZE:
                    self._renders.popitem(last=False)
            else:
                self._renders.move_to_end(key)
            output = await asyncio.shield(future)
        if self.options.own_metadata and output.content_type == "image/jpeg":
            output = dataclasses.replace(output, data=with_own_metadata(output.data, c2pa=self.options.own_c2pa))
        order.record.output_sha256 = hashlib.sha256(output.data).hexdigest()
        return output

    async def _fast(self, order: Order) -> Output:
        """Fast mode: a background generator's output is its input picture, as --output-scale,
        --output-shift and --output-quality say and altered when drawn so (alter.fast), made once per
        input and cached; every other tool's is one small fixed JPEG."""
        record, opts = order.record, self.options
        if record.tool != BACKGROUND_GENERATOR:
            return Output(painter.fast_jpeg())
        key = f"{record.sha256}|{record.alteration}|{opts.output_scale}|{opts.output_shift}|{opts.output_quality}"
        output = self._fast_outputs.get(key)
        if output is None:
            if len(order.data) <= FAST_INLINE_BYTES:  # a small picture: quicker than handing it to a thread
                output = _fast(order, opts)
            else:
                output = await asyncio.get_running_loop().run_in_executor(None, _fast, order, opts)
            self._fast_outputs[key] = output
            while len(self._fast_outputs) > FAST_CACHE_SIZE:
                self._fast_outputs.popitem(last=False)
        else:
            self._fast_outputs.move_to_end(key)
        return output


def _realistic(order: Order, opts: SandboxOptions) -> Output:
    """A background generator's output as another server makes it: larger, moved, altered if drawn so."""
    size = _size(order.data)
    scaled = (round(size[0] * opts.output_scale), round(size[1] * opts.output_scale))
    shift = alter.draw_shift(f"{opts.seed}:{order.record.sha256}", scaled, opts.output_shift)
    return Output(alter.render(order.data, order.values.get("prompt", ""), alteration=order.record.alteration,
                               scale=opts.output_scale, shift=shift, quality=opts.output_quality))


def _fast(order: Order, opts: SandboxOptions) -> Output:
    """alter.fast for one order; a picture that does not decode (fast mode reads only its header at
    submit) gets the fixed JPEG."""
    try:
        size = _size(order.data)
        scaled = (round(size[0] * opts.output_scale), round(size[1] * opts.output_scale))
        shift = alter.draw_shift(f"{opts.seed}:{order.record.sha256}", scaled, opts.output_shift)
        return Output(alter.fast(order.data, alteration=order.record.alteration, scale=opts.output_scale,
                                 shift=shift, quality=opts.output_quality))
    except (OSError, ValueError, Image.DecompressionBombError):
        return Output(painter.fast_jpeg())


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return ImageOps.exif_transpose(img).size


def _decodes(data: bytes, full: bool) -> bool:
    """Whether Pillow can read the image; undecodable inputs end as failed orders (free)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if full:
                img.load()
        return True
    except (OSError, ValueError, Image.DecompressionBombError):
        return False
