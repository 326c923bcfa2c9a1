"""The LightX client's HTTP/1.1 (lightx/wire.py) against servers that write raw bytes on 127.0.0.1."""
from __future__ import annotations

import asyncio
import datetime
import gzip
import ssl
import zlib

import pytest

from pipeline.lightx.wire import BadAnswer, CannotConnect, Disconnected, TooBig, Wire


class RawServer:
    """Reads each request (head and Content-Length body) and answers with the script's bytes.

    A script entry is bytes to write, "close" (close at once), "hang" (never answer: wait for the
    client to close), "pause" (wait 50 ms), or a list of entries to write in turn on one request.
    `most_answering`: the most requests it was answering at one time."""

    def __init__(self, *script):
        self.script = list(script)
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body) as received
        self.connections = 0
        self.answering = self.most_answering = 0
        self.asked = asyncio.Event()  # set at each request's arrival
        self.hung_up = asyncio.Event()  # set when a connection ends on this side
        self.server: asyncio.AbstractServer | None = None
        self.url = ""

    async def start(self, tls: ssl.SSLContext | None = None) -> "RawServer":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append((head, body))
                self.asked.set()
                entry = self.script.pop(0) if len(self.script) > 1 else self.script[0]
                self.answering += 1
                self.most_answering = max(self.most_answering, self.answering)
                try:
                    for part in entry if isinstance(entry, list) else [entry]:
                        if part == "close":
                            writer.transport.abort()
                            return
                        if part == "hang":  # no answer, until the client gives up and closes
                            await reader.read()
                            return
                        if part == "pause":
                            await asyncio.sleep(0.05)
                            continue
                        writer.write(part)
                        await writer.drain()
                        await asyncio.sleep(0.01)
                finally:
                    self.answering -= 1
        finally:
            writer.close()
            self.hung_up.set()


async def until(condition, within_s: float = 2.0) -> None:
    """Yield to the loop until `condition()` holds: no fixed sleep, and a bound if it never does."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within_s
    while not condition():
        assert loop.time() < give_up, "the condition never held"
        await asyncio.sleep(0)


def answer(body: bytes = b"{}", status: str = "200 OK", *headers: str) -> bytes:
    extra = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


@pytest.fixture
async def serve():
    servers, wires = [], []

    async def make(*script, tls: ssl.SSLContext | None = None, **wire_kw) -> tuple[RawServer, Wire]:
        server = await RawServer(*script).start(tls)
        wire = Wire(**wire_kw)
        servers.append(server)
        wires.append(wire)
        return server, wire
    yield make
    for wire in wires:
        await wire.close()
    for server in servers:
        await server.close()


async def test_keep_alive_reuses_one_connection_and_sends_what_it_was_given(serve):
    server, wire = await serve(answer(b'{"ok": 1}', "200 OK", "Content-Type: application/json"))
    for n in range(3):
        got = await wire.request("POST", server.url + "/api/v1/x", body=b'{"n": %d}' % n,
                                 headers={"x-api-key": "k", "Content-Type": "application/json"})
        assert (got.status, got.body, got.headers["content-type"]) == (200, b'{"ok": 1}', "application/json")
    assert server.connections == 1
    head, body = server.requests[2]
    assert head.startswith(b"POST /api/v1/x HTTP/1.1\r\n") and body == b'{"n": 2}'
    lines = head.decode().split("\r\n")
    assert f"Host: {server.url.split('//')[1]}" in lines and "x-api-key: k" in lines
    assert "Content-Length: 8" in lines and any(line.startswith("User-Agent: lightx-pipeline/") for line in lines)


async def test_a_get_sends_no_body_and_no_content_length(serve):
    server, wire = await serve(answer(b"jpeg"))
    assert (await wire.request("GET", server.url + "/o.jpg")).body == b"jpeg"
    assert b"content-length" not in server.requests[0][0].lower()


async def test_a_chunked_answer_is_joined(serve):
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
    server, wire = await serve(chunked)
    assert (await wire.request("GET", server.url + "/")).body == b"abcdefg"
    assert (await wire.request("GET", server.url + "/")).body == b"abcdefg"
    assert server.connections == 1


async def test_an_answer_ended_by_the_connections_end_is_whole_and_the_connection_not_reused(serve):
    server, wire = await serve([b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", "close"])
    assert (await wire.request("GET", server.url + "/")).body == b"all of it"
    assert (await wire.request("GET", server.url + "/")).body == b"all of it"
    assert server.connections == 2


async def test_connection_close_is_honoured(serve):
    server, wire = await serve(answer(b"x", "200 OK", "Connection: close"))
    await wire.request("GET", server.url + "/")
    await wire.request("GET", server.url + "/")
    assert server.connections == 2


@pytest.mark.parametrize("script, error, words", [
    ("close", Disconnected, "closed|lost"),                                     # reset before a byte
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b", "close"], Disconnected, "closed|lost"),
    ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab", "close"], Disconnected, "closed|lost"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", BadAnswer, "not an HTTP/1.1 answer"),
])
async def test_a_broken_answer_is_a_connection_error(serve, script, error, words):
    server, wire = await serve(script, answer(b"fine"))
    with pytest.raises(error, match=words) as caught:
        await wire.request("GET", server.url + "/")
    assert isinstance(caught.value, ConnectionError)
    assert (await wire.request("GET", server.url + "/")).body == b"fine"  # a new connection serves


async def test_an_answer_over_the_cap_is_too_big_by_its_length_or_by_its_bytes(serve):
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"
    server, wire = await serve(answer(b"x" * 20), chunked, answer(b"ok"))
    with pytest.raises(TooBig) as by_length:
        await wire.request("GET", server.url + "/", max_bytes=10)
    assert by_length.value.size == 20
    with pytest.raises(TooBig) as by_bytes:
        await wire.request("GET", server.url + "/", max_bytes=10)
    assert by_bytes.value.size is None
    assert (await wire.request("GET", server.url + "/", max_bytes=10)).body == b"ok"


async def test_no_answer_times_out_within_the_deadline_and_the_connection_is_dropped(serve):
    server, wire = await serve("hang", answer(b"later"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await wire.request("POST", server.url + "/", body=b"{}", timeout_s=0.3)
    assert 0.25 <= loop.time() - started < 2.0
    assert (await wire.request("POST", server.url + "/", body=b"{}")).body == b"later"
    assert server.connections == 2


async def test_a_refused_connection_cannot_connect():
    server = await RawServer(answer()).start()
    url = server.url
    await server.close()
    async with Wire() as wire:
        with pytest.raises(CannotConnect, match="cannot connect to 127.0.0.1"):
            await wire.request("GET", url + "/")


async def test_redirects_are_followed_only_when_asked_and_303_turns_a_post_into_a_get(serve):
    server, wire = await serve(answer(b"", "303 See Other", "Location: /there?x=1"), answer(b"here"))
    got = await wire.request("POST", server.url + "/start", body=b"{}", redirects=True)
    assert (got.status, got.body, got.url) == (200, b"here", server.url + "/there?x=1")
    assert server.requests[1][0].startswith(b"GET /there?x=1 HTTP/1.1") and server.requests[1][1] == b""
    server.script = [answer(b"", "302 Found", "Location: /elsewhere")]
    not_followed = await wire.request("POST", server.url + "/api", body=b"{}")
    assert (not_followed.status, not_followed.headers["location"]) == (302, "/elsewhere")


async def test_a_307_keeps_the_method_and_body_a_redirect_away_from_http_is_returned_and_loops_end(serve):
    server, wire = await serve(answer(b"", "307 Temporary Redirect", "Location: /b"), answer(b"put"))
    await wire.request("PUT", server.url + "/a", body=b"jpeg", redirects=True)
    assert server.requests[1][0].startswith(b"PUT /b ") and server.requests[1][1] == b"jpeg"
    server.script = [answer(b"", "302 Found", "Location: file:///etc/passwd")]
    away = await wire.request("GET", server.url + "/", redirects=True)
    assert (away.status, away.url) == (302, "file:///etc/passwd")
    server.script = [answer(b"", "302 Found", "Location: /loop")]
    with pytest.raises(BadAnswer, match="redirects"):
        await wire.request("GET", server.url + "/", redirects=True)


@pytest.mark.parametrize("coding, packed", [
    ("gzip", gzip.compress(b'{"statusCode": 2000}', mtime=0)),  # mtime=0: the same bytes in every worker
    ("deflate", zlib.compress(b'{"statusCode": 2000}')),
    ("deflate", zlib.compress(b'{"statusCode": 2000}')[2:-4]),  # raw deflate, as some servers send it
], ids=["gzip", "deflate", "raw-deflate"])
async def test_a_body_compressed_unasked_is_decoded(serve, coding, packed):
    server, wire = await serve(answer(packed, "200 OK", f"Content-Encoding: {coding}"))
    assert (await wire.request("GET", server.url + "/")).body == b'{"statusCode": 2000}'
    assert b"Accept-Encoding: identity" in server.requests[0][0]


async def test_a_compressed_body_that_inflates_past_the_cap_is_too_big(serve):
    server, wire = await serve(answer(gzip.compress(b"0" * 100_000), "200 OK", "Content-Encoding: gzip"))
    with pytest.raises(TooBig):
        await wire.request("GET", server.url + "/", max_bytes=10_000)


async def test_100_continue_is_skipped(serve):
    server, wire = await serve(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"done"))
    assert (await wire.request("PUT", server.url + "/", body=b"x")).body == b"done"


async def test_a_signed_query_is_sent_byte_for_byte_and_a_raw_path_is_percent_encoded(serve):
    server, wire = await serve(answer())
    signed = "/bucket/a%2Fb.jpg?X-Amz-Credential=AK%2F2026%2Fus&X-Amz-Signature=ab+cd"
    await wire.request("PUT", server.url + signed, body=b"x")
    await wire.request("GET", server.url + "/café photo.jpg")
    assert server.requests[0][0].split(b" ")[1] == signed.encode()
    assert server.requests[1][0].split(b" ")[1] == b"/caf%C3%A9%20photo.jpg"


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(serve):
    server, wire = await serve(answer())
    with pytest.raises(ValueError, match="line break"):
        await wire.request("POST", server.url + "/", body=b"{}", headers={"x-api-key": "k\r\nX-Evil: 1"})
    assert server.requests == []


async def test_a_connection_idle_too_long_is_not_reused(serve):
    server, wire = await serve(answer(b"a"), idle_s=0)  # every idle connection is too old at once
    await wire.request("GET", server.url + "/")
    await wire.request("GET", server.url + "/")
    assert server.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_not_reused(serve):
    server, wire = await serve([answer(b"a"), "close"], answer(b"b"))
    await wire.request("GET", server.url + "/")
    await server.hung_up.wait()
    # until this side has read the server's end of it too (the idle connection's transport is gone)
    await until(lambda: all(conn.transport is None for idle in wire._idle.values() for conn in idle))
    assert (await wire.request("GET", server.url + "/")).body == b"b"


async def test_no_more_than_limit_requests_are_on_the_wire_at_once(serve):
    server, wire = await serve(["pause", answer(b"x")], limit=3)
    got = await asyncio.gather(*(wire.request("GET", server.url + "/") for _ in range(10)))
    assert [a.body for a in got] == [b"x"] * 10
    assert server.most_answering == 3 and server.connections == 3


async def test_a_cancelled_request_drops_its_connection_and_the_next_one_is_served(serve):
    server, wire = await serve("hang", answer(b"next"))
    task = asyncio.create_task(wire.request("GET", server.url + "/"))
    await server.asked.wait()  # on the wire, its answer never coming
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(server.hung_up.wait(), 2)  # the client closed that connection
    assert (await wire.request("GET", server.url + "/")).body == b"next"
    assert server.connections == 2


def _self_signed() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and a client one trusting it."""
    import ipaddress
    import tempfile
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "cert.pem").write_bytes(pem)
        (Path(tmp) / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(Path(tmp) / "cert.pem", Path(tmp) / "key.pem")
    client = ssl.create_default_context()
    client.load_verify_locations(cadata=pem.decode())
    return server, client


async def test_https_is_verified_against_the_trust_store(serve):
    server_tls, client_tls = _self_signed()
    server, trusting = await serve(answer(b"secret"), tls=server_tls, ssl_context=client_tls)
    assert (await trusting.request("GET", server.url + "/")).body == b"secret"
    assert (await trusting.request("GET", server.url + "/")).body == b"secret"
    assert server.connections == 1
    async with Wire() as default:  # the system's trust store does not know this certificate
        with pytest.raises(CannotConnect, match="SSLCertVerificationError"):
            await default.request("GET", server.url + "/")


async def test_a_body_too_big_for_one_write_arrives_whole(serve):
    server, wire = await serve(answer(b"stored"))
    picture = bytes(range(256)) * 1200  # 300 KB: its head and body go in two writes
    assert (await wire.request("PUT", server.url + "/s3/key", body=picture)).body == b"stored"
    assert server.requests[0][1] == picture


def test_a_run_imports_no_aiohttp():
    """The run's start-up is part of every item's CPU: aiohttp (and its two SSL contexts) stays out of it."""
    import subprocess
    import sys
    code = ("import sys, pipeline, pipeline.cli, pipeline.run.engine, pipeline.run.drive, pipeline.plan.sources;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


async def test_a_servers_keep_alive_timeout_is_kept_short_of(serve):
    server, wire = await serve(answer(b"a", "200 OK", "Keep-Alive: timeout=3, max=100"),
                               answer(b"a", "200 OK", "Keep-Alive: timeout=1"))
    await wire.request("GET", server.url + "/")
    await wire.request("GET", server.url + "/")  # within 3 s less the second kept in hand: reused
    assert server.connections == 1
    await wire.request("GET", server.url + "/")  # 1 s less that second: not kept at all
    assert server.connections == 2


async def test_a_connection_whose_body_the_server_did_not_read_is_not_reused():
    connections = 0

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")  # the head only: a refusal before the body is read
        writer.write(answer(b"too big", "413 Payload Too Large"))
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    server = await asyncio.start_server(early, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    try:
        async with Wire() as wire:
            got = await wire.request("PUT", url, body=b"\0" * (32 * 1024 * 1024), timeout_s=5)
            assert (got.status, got.body) == (413, b"too big")
            assert (await wire.request("PUT", url, body=b"{}", timeout_s=5)).status == 413
            assert connections == 2
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("protocol, with_length", [("HTTP/1.0", False), ("HTTP/1.0", True), ("HTTP/1.1", True)])
async def test_the_standard_librarys_http_server_is_understood(protocol, with_length):
    """A server we did not write: http.server answers HTTP/1.0 and closes, or keeps HTTP/1.1 alive."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = protocol

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = b'{"statusCode": 2000, "echo": ' + body + b"}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if with_length:
                self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        async with Wire() as wire:
            for n in range(3):
                got = await wire.request("POST", f"http://127.0.0.1:{server.server_port}/v1/x", body=b"%d" % n)
                assert (got.status, got.body) == (200, b'{"statusCode": 2000, "echo": %d}' % n)
    finally:
        server.shutdown()
        server.server_close()


async def test_a_presigned_put_and_get_against_moto_s3(s3):
    """A server we did not write: an S3 presigned URL (its signature in the query) PUT and GET as sent."""
    s3.client.create_bucket(Bucket="uploads")
    key = "in/a photo +1 (café).jpg"  # characters a signed URL percent-encodes
    put_url = s3.client.generate_presigned_url("put_object", Params={"Bucket": "uploads", "Key": key,
                                                                     "ContentType": "image/jpeg"}, ExpiresIn=300)
    get_url = s3.client.generate_presigned_url("get_object", Params={"Bucket": "uploads", "Key": key}, ExpiresIn=300)
    picture = b"\xff\xd8" + bytes(range(256)) * 40 + b"\xff\xd9"
    async with Wire() as wire:
        put = await wire.request("PUT", put_url, body=picture, headers={"Content-Type": "image/jpeg"})
        assert put.status == 200, put.body
        got = await wire.request("GET", get_url, redirects=True)
    assert (got.status, got.body) == (200, picture)
    assert s3.get("uploads", key)["Body"].read() == picture
