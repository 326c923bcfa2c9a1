"""A LightX-compatible local server: a local preview of the flow, not LightX's model.

It speaks the protocol of ``shared/lightx-api.md`` (upload slot, presigned PUT, submit, poll,
download) on loopback, so a newcomer without a key sees the tool work and every test runs the real
client against it. Its pictures are painted by Pillow from the prompt's colour and material words;
they show where LightX's output would go, not what LightX would make.

    from pipeline.sandbox import SandboxOptions, SandboxThread, SANDBOX_KEY
    with SandboxThread(SandboxOptions(processing_s=0.05, rate_429=0.2)) as sb:
        ...  # point a client at sb.base_url with key SANDBOX_KEY
        sb.ledger_snapshot()["credits"]

Modules: options (settings and CLI flags), app (routes, errors), faults (injected failures and where
they apply), presign (S3-style PUT URLs), state (slots, orders), ledger (what was charged and seen),
painter/scene/textures (pictures), server (start_sandbox, serve), testing (SandboxThread).
"""
from pipeline.sandbox.app import ROOT, create_app, ledger_of
from pipeline.sandbox.ledger import Ledger, OrderRecord
from pipeline.sandbox.options import (SANDBOX_KEY, SandboxOptions, add_sandbox_arguments,
                                      options_from_args)
from pipeline.sandbox.server import RunningSandbox, serve, start_sandbox
from pipeline.sandbox.testing import SandboxThread

__all__ = [
    "ROOT", "SANDBOX_KEY", "Ledger", "OrderRecord", "RunningSandbox", "SandboxOptions",
    "SandboxThread", "add_sandbox_arguments", "create_app", "ledger_of", "options_from_args",
    "serve", "start_sandbox",
]
