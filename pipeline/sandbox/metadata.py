"""Outputs that carry metadata of their own, as a real service's may (`--own-metadata`, `--own-c2pa`).

An EXIF APP1 (camera make, software), an XMP packet (CreatorTool, a title, a DigitalSourceType-free
description), a COM segment and, with `c2pa`, an APP11 JUMBF box shaped like a C2PA manifest store,
all put after SOI (and JFIF's APP0): the picture's own bytes from there on are as the handler encoded them.
"""
from __future__ import annotations

import struct

from PIL import Image

EXIF_MAKE = "LightX Sandbox"
EXIF_SOFTWARE = "sandbox-renderer 1.0"
CREATOR_TOOL = "LightX sandbox renderer"
TITLE = "Sandbox output"
COMMENT = b"made by the LightX sandbox"
XMP = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
       '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="sandbox">\n'
       ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
       '  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
       ' xmlns:dc="http://purl.org/dc/elements/1.1/" xmp:CreatorTool="' + CREATOR_TOOL + '">\n'
       '   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">' + TITLE + '</rdf:li></rdf:Alt></dc:title>\n'
       '  </rdf:Description>\n'
       ' </rdf:RDF>\n'
       '</x:xmpmeta>\n' + ' ' * 200 + '\n<?xpacket end="w"?>').encode()


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _jumbf() -> bytes:
    """An APP11 payload as C2PA writes one: JPEG XT header (CI 'JP', instance, sequence) + a jumb box."""
    label = b"c2pa\x00"
    description = b"jumd" + bytes.fromhex("6332706100110010800000aa00389b71") + b"\x03" + label
    desc_box = struct.pack(">I", len(description) + 4) + description
    content = b"json" + b'{"claim_generator":"LightX sandbox"}'
    content_box = struct.pack(">I", len(content) + 4) + content
    body = b"jumb" + desc_box + content_box
    box = struct.pack(">I", len(body) + 4) + body
    return b"JP" + struct.pack(">HI", 1, 1) + box


def with_own_metadata(jpeg: bytes, *, c2pa: bool = False) -> bytes:
    """The JPEG with the service's own EXIF, XMP and COM (and APP11 C2PA) segments after SOI."""
    exif = Image.Exif()
    exif[0x010F] = EXIF_MAKE
    exif[0x0131] = EXIF_SOFTWARE
    segments = [_segment(0xE1, exif.tobytes()),  # Pillow's bytes start with Exif\0\0
                _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + XMP),
                _segment(0xFE, COMMENT)]
    if c2pa:
        segments.append(_segment(0xEB, _jumbf()))
    at = 2
    if jpeg[2:4] == b"\xff\xe0":  # JFIF's APP0 stays first
        at = 4 + struct.unpack_from(">H", jpeg, 4)[0]
    return jpeg[:at] + b"".join(segments) + jpeg[at:]
