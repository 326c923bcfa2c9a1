"""Image formats by their first bytes: the one table of magic numbers (no Pillow import)."""
from __future__ import annotations

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
GIF_MAGICS = (b"GIF87a", b"GIF89a")
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


def sniff_format(data: bytes) -> str | None:
    """Name the image format from its magic bytes ("jpeg", "png", "webp", "gif", "bmp", "tiff"), or None."""
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in GIF_MAGICS:
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in TIFF_MAGICS:
        return "tiff"
    return None
