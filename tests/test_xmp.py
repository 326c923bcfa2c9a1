"""media/xmp.py on its own: segment and chunk surgery, merging into a packet the file already has."""
from __future__ import annotations

import io
import struct
import zlib

import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from helpers import jpeg_segments
from pipeline.media import xmp
from pipeline.sandbox.metadata import with_own_metadata

D = xmp.Disclosure(xmp.TRAINED, "LightX AI Background Generator", "v1")


def jpeg(**save) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(buffer, "JPEG", **save)
    return buffer.getvalue()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(buffer, "PNG")
    return buffer.getvalue()


def theirs(extra: str = "") -> bytes:
    return ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
            f'xmlns:Iptc4xmpExt="{xmp.IPTC_EXT}" xmp:CreatorTool="their tool"{extra}/>'
            '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode()


def test_a_jpeg_without_xmp_gets_one_app1_after_jfif_and_nothing_else_moves():
    data = jpeg()
    out = xmp.disclose(data, D)
    before, after = jpeg_segments(data), jpeg_segments(out)
    assert after[0] == before[0] and after[0][0] == 0xE0  # JFIF stays first
    assert after[1][0] == 0xE1 and after[1][1].startswith(xmp.JPEG_XMP)
    assert after[2:] == before[1:]
    assert xmp.carried(out) == D.properties()
    assert xmp.disclose(out, D) is out and xmp.disclose(out, None) == data


def test_the_services_packet_is_merged_into_and_its_values_are_never_overwritten():
    data = jpeg(xmp=theirs(' Iptc4xmpExt:DigitalSourceType="their value"'))
    out = xmp.disclose(data, D)
    assert sum(p.startswith(xmp.JPEG_XMP) for _, p in jpeg_segments(out)) == 1
    packet = xmp.packet_of(out)
    assert b'xmp:CreatorTool="their tool"' in packet and packet.count(b"<?xpacket") == 2
    assert xmp.carried(out)["DigitalSourceType"] == "their value"  # theirs, not written twice
    assert packet.count(b"DigitalSourceType") == 1
    assert xmp.carried(out)["AISystemUsed"] == D.system
    changed = xmp.disclose(out, xmp.Disclosure(xmp.COMPOSITE, "LightX AI Upscale", "v2"))
    assert xmp.carried(changed) == {"DigitalSourceType": "their value", "AISystemUsed": "LightX AI Upscale",
                                    "AISystemVersionUsed": "v2"}
    assert xmp.disclose(changed, None) == data  # their packet back, byte for byte


def test_exif_com_and_app11_stay_byte_for_byte():
    data = with_own_metadata(jpeg(), c2pa=True)
    out = xmp.disclose(data, D)
    kept = [s for s in jpeg_segments(data) if not s[1].startswith(xmp.JPEG_XMP)]
    assert [s for s in jpeg_segments(out) if not s[1].startswith(xmp.JPEG_XMP)] == kept
    assert {m for m, _ in kept} >= {0xE1, 0xFE, 0xEB, 0xDA}


def test_a_png_gets_an_itxt_chunk_before_idat_with_a_right_crc():
    data = png()
    out = xmp.disclose(data, D)
    chunks = [(kind, out[start:end]) for kind, start, end in xmp._chunks(out)]
    kinds = [k for k, _ in chunks]
    assert kinds.index(b"iTXt") < kinds.index(b"IDAT")
    body = dict(chunks)[b"iTXt"]
    assert body.startswith(b"XML:com.adobe.xmp\x00\x00\x00\x00\x00")
    at = out.index(b"iTXt")
    (length,) = struct.unpack(">I", out[at - 4:at])
    assert struct.unpack(">I", out[at + 4 + length:at + 8 + length])[0] == zlib.crc32(out[at:at + 4 + length])
    assert Image.open(io.BytesIO(out)).size == (20, 20)
    assert xmp.carried(out) == D.properties() and xmp.disclose(out, None) == data
    assert xmp.pixels_id(out) == xmp.pixels_id(data)


def test_a_compressed_png_packet_is_read_and_replaced_in_place():
    text = theirs()
    body = b"iTXt" + b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(text)
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    data = png()
    data = data[:33] + chunk + data[33:]  # after IHDR
    out = xmp.disclose(data, D)
    assert out.count(b"XML:com.adobe.xmp") == 1 and xmp.carried(out)["AISystemUsed"] == D.system
    assert b'xmp:CreatorTool="their tool"' in xmp.packet_of(out)


@pytest.mark.parametrize("packet, problem", [
    (b"<x:xmpmeta><unclosed>", "not well-formed"),
    (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x/>', "DTD"),
    (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>', "no rdf:RDF"),
])
def test_a_packet_that_cannot_take_ours_is_an_xmp_error(packet, problem):
    data = jpeg(xmp=packet)
    with pytest.raises(xmp.XmpError, match=problem):
        xmp.disclose(data, D)


def test_a_packet_too_big_for_one_segment_is_an_xmp_error():
    big = xmp.Disclosure(xmp.TRAINED, "x", "v1", prompt="p" * 70_000)
    with pytest.raises(xmp.XmpError, match="over one JPEG segment"):
        xmp.disclose(jpeg(), big)


def test_a_packet_near_the_limit_gives_up_its_padding_to_take_ours():
    padded = theirs().replace(b'<?xpacket end="w"?>', b" " * 65_000 + b'<?xpacket end="w"?>')
    data = jpeg(xmp=padded)
    out = xmp.disclose(data, D)
    assert xmp.carried(out)["AISystemUsed"] == D.system
    assert b'xmp:CreatorTool="their tool"' in xmp.packet_of(out)
    assert jpeg_segments(out)[-1] == jpeg_segments(data)[-1]


def test_a_cut_jpeg_is_a_value_error():
    with pytest.raises(ValueError):
        xmp.disclose(jpeg()[:40], D)


@settings(max_examples=60, deadline=None)
@given(prompt=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=200)
       | st.sampled_from([" a ", "line\r\nbreak\r", "\x00\x1f<&>]]>", "\u00e9t\u00e9 \U0001F600"]),
       service=st.booleans())
def test_any_prompt_round_trips_and_the_image_data_never_changes(prompt, service):
    data = jpeg(xmp=theirs()) if service else jpeg()
    d = xmp.Disclosure(xmp.COMPOSITE, "LightX AI Expand Photo", "v1", prompt=prompt)
    out = xmp.disclose(data, d)
    assert jpeg_segments(out)[-1] == jpeg_segments(data)[-1]
    assert xmp.carried(out).get("AIPromptInformation", "") == d.properties().get("AIPromptInformation", "")
    assert xmp.disclose(out, d) is out
    assert xmp.disclose(out, None) == data
