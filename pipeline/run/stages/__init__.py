"""The four stages an item goes through, one module each, one shared signature.

    async def run(ctx: Context, job: Job) -> None

A stage moves ``job.row`` to its next state through ``ctx.ckpt.save``, which allows only the moves
in ``pipeline.run.states.TRANSITIONS`` (drawn there). The registry maps the state an item is in to the
stage that moves it on; DONE and FAILED have no stage.
"""
from __future__ import annotations

from pipeline.run.stages import download, poll, submit, upload
from pipeline.run.stages.context import Context, Job, Parked
from pipeline.run.states import State

# state an item is in -> (stage name, the coroutine that moves it on)
STAGES = {
    State.PENDING: ("upload", upload.run),
    State.UPLOADED: ("submit", submit.run),
    State.SUBMITTED: ("poll", poll.run),
    State.GENERATED: ("download", download.run),
}
# The stages an order spends at the API: an item holds one of limits.concurrency order slots
# through them. Uploads and downloads run beside the orders, in limits.transfers more items.
ORDER_STAGES = frozenset({"submit", "poll"})

__all__ = ["ORDER_STAGES", "STAGES", "Context", "Job", "Parked"]
