"""A LightX-compatible local server: a local preview of the flow, not LightX's model.

It speaks the protocol of ``shared/lightx-api.md`` (upload slot, presigned PUT, submit, poll,
download) on loopback, for every tool of ``pipeline.lightx.tools``, so a newcomer without a key
sees the tool work and every test runs the real client against it. Its pictures are painted by
Pillow from the colour and material words of the prompt's scene (not its product), kept apart from
the product's colour; they show where LightX's output would go, not what LightX would make.

    from pipeline.sandbox import SandboxOptions, SandboxThread, SANDBOX_KEY
    with SandboxThread(SandboxOptions(processing_s=0.05, rate_429=0.2)) as sb:
        ...  # point a client at sb.base_url with key SANDBOX_KEY
        sb.ledger_snapshot()["credits"]

Modules: options (settings and CLI flags), app (routes, errors), faults (injected failures and where
they apply), presign (S3-style PUT URLs), state (slots, orders), ledger (what was charged and seen),
painter/scene/textures (the background generator's pictures), handlers (every registered tool's
output), server (start_sandbox, serve), testing (SandboxThread).
"""
from importlib import import_module

# Lazy, so that `pipeline --help` or `pipeline validate` do not pay for aiohttp.web and Pillow painting.
_EXPORTS = {
    "ROOT": "app", "create_app": "app", "ledger_of": "app",
    "Ledger": "ledger", "OrderRecord": "ledger",
    "SANDBOX_KEY": "options", "SandboxOptions": "options", "add_sandbox_arguments": "options",
    "options_from_args": "options",
    "RunningSandbox": "server", "serve": "server", "start_sandbox": "server",
    "SandboxThread": "testing",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline.sandbox' has no attribute {name!r}")
    return getattr(import_module(f"pipeline.sandbox.{_EXPORTS[name]}"), name)
