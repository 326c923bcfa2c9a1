"""AI-disclosure XMP (IPTC Photo Metadata, Extension schema) put into a JPEG or PNG without re-encoding.

    d = Disclosure(TRAINED, "LightX AI Background Generator", "v1")
    out = disclose(jpeg_bytes, d)    # one APP1 XMP segment added or merged; SOS..EOI untouched
    disclose(out, d) is out          # already carried: the same object back, nothing to write
    disclose(out, None)              # our properties removed again, the service's kept

Our properties live in an `rdf:Description` of their own, marked with `lxp:Disclosure`, inside the
file's one XMP packet: a packet the service wrote is kept byte for byte around it, and a property it
already has (its own DigitalSourceType, say) is never written a second time. So the disclosure can
be changed or turned off later by replacing that one element. The segment and chunk surgery is done
here by hand (it is simple, and Pillow would re-encode); the packet is read with a real XML parser.
"""
from __future__ import annotations

import hashlib
import re
import struct
import zlib
from dataclasses import dataclass
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from pipeline.media.formats import JPEG_MAGIC, PNG_SIGNATURE

IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
OURS = "http://ns.lightx-pipeline.org/disclosure/1.0/"  # the marker of our rdf:Description
SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED = SOURCE_TYPES + "trainedAlgorithmicMedia"
COMPOSITE = SOURCE_TYPES + "compositeWithTrainedAlgorithmicMedia"

JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
PNG_XMP = b"XML:com.adobe.xmp"
MAX_SEGMENT = 65533  # an APP1 payload; the length field counts itself too
_PACKET_ID = "W5M0MpCehiHzreSzNTczkc9d"
_OUR_BLOCK = re.compile(rb'<rdf:Description rdf:about="" xmlns:rdf="' + re.escape(RDF.encode()) +
                        rb'" xmlns:lxp="' + re.escape(OURS.encode()) + rb'".*?</rdf:Description>', re.S)
_SAMPLE = 32 * 1024
_PADDING = re.compile(rb"\s{2,}(<\?xpacket end)")
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_RDF_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?RDF\s*>")


class XmpError(ValueError):
    """The file's own XMP cannot take ours: not well-formed, or too big for one JPEG segment."""


@dataclass(frozen=True)
class Disclosure:
    """The properties written: DigitalSourceType, AISystemUsed, AISystemVersionUsed, AIPromptInformation."""

    source_type: str
    system: str
    version: str
    prompt: str | None = None

    def properties(self) -> dict[str, str]:
        props = {"DigitalSourceType": self.source_type, "AISystemUsed": self.system,
                 "AISystemVersionUsed": self.version}
        if self.prompt:
            props["AIPromptInformation"] = self.prompt
        # as an XML parser reads them back: line ends as LF, no characters XML 1.0 cannot hold
        clean = {k: _XML_UNSAFE.sub("", v.replace("\r\n", "\n").replace("\r", "\n")) for k, v in props.items()}
        return {k: v for k, v in clean.items() if v}

    @property
    def key(self) -> str:
        """Names this disclosure in the records of what each file carries."""
        return hashlib.sha256(repr(sorted(self.properties().items())).encode()).hexdigest()[:16]


def disclose(data: bytes, disclosure: Disclosure | None) -> bytes:
    """`data` with exactly `disclosure` as our properties (None: none); `data` itself when it has them.

    Raises XmpError when the file's own packet cannot be read or would not fit, ValueError when the
    file is neither a well-formed JPEG nor PNG."""
    if data.startswith(JPEG_MAGIC):
        return _jpeg(data, disclosure)
    if data.startswith(PNG_SIGNATURE):
        return _png(data, disclosure)
    raise ValueError("not a JPEG or PNG")


def packet(disclosure: Disclosure) -> bytes:
    """A packet of our properties alone, for a file made here (a WebP rendition, through Pillow)."""
    return _fresh(_block(disclosure, set()))


def packet_of(data: bytes) -> bytes | None:
    """The file's XMP packet (the first one, as readers take it), or None."""
    if data.startswith(JPEG_MAGIC):
        found = _jpeg_xmp(data)[0]
        return None if found is None else bytes(data[found[0] + 4 + len(JPEG_XMP):found[1]])
    if data.startswith(PNG_SIGNATURE):
        found = _png_xmp(data)
        return None if found is None else found[2]
    return None


def carried(data: bytes) -> dict[str, str]:
    """The disclosure properties the file carries, ours or the service's: {local name: value}."""
    packet = packet_of(data)
    if packet is None:
        return {}
    try:
        return _read(packet)[1]
    except XmpError:
        return {}


def pixels_id(data: bytes) -> str:
    """Identifies the image data (JPEG: SOS to the end; PNG: the IDAT chunks), not the metadata around it.

    A JPEG's is its length and the CRC-32 of its first and last 32 KB: a tool that edits metadata
    keeps the entropy-coded data byte for byte, and one that changes a pixel encodes it anew, which
    changes its length and its bytes from the first scan on. Hashing all of it would cost more than
    the rest of the disclosure (0.13 ms per 0.5 MB)."""
    if data.startswith(JPEG_MAGIC):
        body = memoryview(data)[_jpeg_xmp(data)[1]:]
        return f"{len(body)}:{zlib.crc32(body[-_SAMPLE:], zlib.crc32(body[:_SAMPLE])):08x}"
    crc, size = 0, 0
    for kind, start, end in _chunks(data):
        if kind == b"IDAT":
            crc, size = zlib.crc32(memoryview(data)[start:end], crc), size + end - start
    return f"{size}:{crc:08x}"


# -- the packet ------------------------------------------------------------------------------------

def _block(disclosure: Disclosure, skip: set[str]) -> bytes | None:
    """Our rdf:Description: the properties the service's packet does not have already."""
    props = {k: v for k, v in disclosure.properties().items() if k not in skip}
    if not props:
        return None
    body = "".join(f"<Iptc4xmpExt:{k}>{escape(v)}</Iptc4xmpExt:{k}>" for k, v in props.items())
    return (f'<rdf:Description rdf:about="" xmlns:rdf="{RDF}" xmlns:lxp="{OURS}" '
            f'xmlns:Iptc4xmpExt="{IPTC_EXT}" lxp:Disclosure={quoteattr(" ".join(props))}>'
            f"{body}</rdf:Description>").encode()


def _fresh(block: bytes) -> bytes:
    return (f'<?xpacket begin="\ufeff" id="{_PACKET_ID}"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            f'<rdf:RDF xmlns:rdf="{RDF}">').encode() + block + b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'


def _read(packet: bytes) -> tuple[dict[str, str], dict[str, str], int]:
    """(our properties, every disclosure property, descriptions that are not ours) of a packet."""
    head = packet[:4096]
    if b"<!DOCTYPE" in head or b"<!ENTITY" in packet:
        raise XmpError("the file's XMP packet declares a DTD, which XMP forbids")
    text = re.sub(rb"<\?xpacket[^>]*\?>", b"", packet).strip(b"\x00 \t\r\n")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise XmpError(f"the file's XMP packet is not well-formed XML ({exc})") from None
    ours: dict[str, str] = {}
    every: dict[str, str] = {}
    others = 0
    for desc in root.iter(f"{{{RDF}}}Description"):
        mine = f"{{{OURS}}}Disclosure" in desc.attrib
        others += not mine
        found = {name[len(IPTC_EXT) + 2:]: value for name, value in desc.attrib.items()
                 if name.startswith(f"{{{IPTC_EXT}}}")}
        found.update((child.tag[len(IPTC_EXT) + 2:], "".join(child.itertext()) if mine
                      else "".join(child.itertext()).strip())
                     for child in desc if child.tag.startswith(f"{{{IPTC_EXT}}}"))
        (ours if mine else every).update(found)
    return ours, {**ours, **every}, others


def _merged(packet: bytes | None, disclosure: Disclosure | None) -> bytes | None | bool:
    """The packet to write: False when `packet` is right as it is, None when there should be none."""
    if packet is None:
        if disclosure is None:
            return False
        return _fresh(_block(disclosure, set()))
    ours, every, others = _read(packet)
    theirs = {k for k in every if k not in ours}
    if disclosure is None:
        wanted: dict[str, str] = {}
    else:
        wanted = {k: v for k, v in disclosure.properties().items() if k not in theirs}
    if ours == wanted:
        return False
    stripped = _OUR_BLOCK.sub(b"", packet)
    if disclosure is None and others == 0:
        return None  # only ever ours: the file goes back to having no packet
    block = _block(disclosure, theirs) if disclosure else None
    if block is None:
        return stripped
    ends = list(_RDF_END.finditer(stripped))
    if not ends:
        raise XmpError("the file's XMP packet has no rdf:RDF element")
    at = ends[-1].start()
    result = stripped[:at] + block + stripped[at:]
    if _read(result)[0] != wanted:  # the parser must read back exactly what we meant to add
        raise XmpError("the file's XMP packet could not take our properties")
    return result


# -- JPEG ------------------------------------------------------------------------------------------

def _jpeg_xmp(data: bytes) -> tuple[tuple[int, int] | None, int, int]:
    """(the first XMP APP1 as (start, end) or None, where SOS starts, where to insert a new segment)."""
    pos, size = 2, len(data)
    found = None
    insert = 2
    while True:
        if pos + 4 > size or data[pos] != 0xFF:
            raise ValueError("JPEG without a start of scan")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:
            return found, pos, insert
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > size:
            raise ValueError("JPEG segment runs past the end")
        if marker == 0xE1 and found is None and data.startswith(JPEG_XMP, pos + 4):
            found = (pos, end)
        if marker in (0xE0, 0xE1) and insert == pos:  # after JFIF and EXIF, as writers put XMP
            insert = end
        pos = end


def _jpeg(data: bytes, disclosure: Disclosure | None) -> bytes:
    found, _sos, insert = _jpeg_xmp(data)
    packet = None if found is None else bytes(data[found[0] + 4 + len(JPEG_XMP):found[1]])
    new = _merged(packet, disclosure)
    if new is False:
        return data
    view = memoryview(data)
    if new is None:
        return b"".join((view[:found[0]], view[found[1]:]))
    payload = JPEG_XMP + new
    if len(payload) > MAX_SEGMENT:  # the packet's padding (room left for editing in place) goes first
        payload = JPEG_XMP + _PADDING.sub(rb"\1", new)
    if len(payload) > MAX_SEGMENT:
        raise XmpError(f"the XMP packet would be {len(payload)} bytes, over one JPEG segment's {MAX_SEGMENT}")
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    if found is None:
        return b"".join((view[:insert], segment, view[insert:]))
    return b"".join((view[:found[0]], segment, view[found[1]:]))


# -- PNG -------------------------------------------------------------------------------------------

def _chunks(data: bytes):
    """(type, data start, data end) of every chunk, up to IEND."""
    pos, size = len(PNG_SIGNATURE), len(data)
    while pos + 12 <= size:
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length
        if end + 4 > size:
            raise ValueError("PNG chunk runs past the end")
        yield kind, pos + 8, end
        if kind == b"IEND":
            return
        pos = end + 4
    raise ValueError("PNG without IEND")


def _png_xmp(data: bytes) -> tuple[int, int, bytes] | None:
    """(chunk start, chunk end, packet) of the XMP iTXt chunk, or None."""
    for kind, start, end in _chunks(data):
        if kind == b"iTXt" and data.startswith(PNG_XMP + b"\x00", start):
            body = data[start + len(PNG_XMP) + 1:end]
            compressed = body[:1] == b"\x01"
            text = body[2:].split(b"\x00", 2)[-1]  # after the language tag and translated keyword
            return start - 8, end + 4, zlib.decompress(text) if compressed else text
    return None


def _png(data: bytes, disclosure: Disclosure | None) -> bytes:
    found = _png_xmp(data)
    new = _merged(None if found is None else found[2], disclosure)
    if new is False:
        return data
    view = memoryview(data)
    if new is None:
        return b"".join((view[:found[0]], view[found[1]:]))
    body = b"iTXt" + PNG_XMP + b"\x00\x00\x00\x00\x00" + new
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    if found is not None:
        return b"".join((view[:found[0]], chunk, view[found[1]:]))
    idat = next(start - 8 for kind, start, _ in _chunks(data) if kind in (b"IDAT", b"IEND"))
    return b"".join((view[:idat], chunk, view[idat:]))
