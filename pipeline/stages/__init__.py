"""The four stages an item goes through, one module each, one shared signature.

    async def run(ctx: Context, job: Job) -> None

A stage moves ``job.row`` to its next state through ``ctx.ckpt.save``. The registry maps the
state an item is in to the stage that moves it on; "done" and "failed" have no stage.

    pending --upload--> uploaded --submit--> submitted --poll--> generated --download--> done
                                    ^                      |
                                    +---- failed order ----+   (free; resubmitted up to retries.failed_orders)
"""
from __future__ import annotations

from pipeline.stages import download, poll, submit, upload
from pipeline.stages.context import Context, Job, Parked

# state an item is in -> (stage name, the coroutine that moves it on)
STAGES = {
    "pending": ("upload", upload.run),
    "uploaded": ("submit", submit.run),
    "submitted": ("poll", poll.run),
    "generated": ("download", download.run),
}
# The stages an order spends at the API: an item holds one of limits.concurrency order slots
# through them. Uploads and downloads run beside the orders, in limits.transfers more items.
ORDER_STAGES = frozenset({"submit", "poll"})

__all__ = ["ORDER_STAGES", "STAGES", "Context", "Job", "Parked"]
