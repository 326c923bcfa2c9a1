"""Preprocessing before upload: every odd input becomes a JPEG/PNG that fits and says what it is."""
from __future__ import annotations

import io
import os
import random
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from pipeline.media.images import MAX_UPLOAD_BYTES, ImageError, PreparedImage, prepare_image, sniff_format

ORIENTATION = 0x0112


def encode(im: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def assert_well_formed(prepared: PreparedImage, max_bytes: int = MAX_UPLOAD_BYTES) -> Image.Image:
    """The declared type matches the bytes, they fit, and they decode to the declared size."""
    assert prepared.content_type == f"image/{sniff_format(prepared.data)}"
    assert prepared.content_type in ("image/jpeg", "image/png")
    assert len(prepared.data) <= max_bytes
    out = decode(prepared.data)
    assert out.size == (prepared.width, prepared.height)
    assert out.mode in ("RGB", "L", "RGBA")
    return out


def noise(mode: str, size: tuple[int, int]) -> Image.Image:
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * len(mode)))


def two_tone(size=(40, 20)) -> Image.Image:
    """Left half red, right half blue, so rotations are visible."""
    im = Image.new("RGB", size, (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    return im


def close(pixel, expected, tolerance=12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected))


def png_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims another size (what a decompression bomb looks like)."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:33] = ihdr + struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


@pytest.fixture(scope="module")
def big_noise_png() -> bytes:
    data = encode(noise("RGB", (1600, 1600)), "PNG")
    assert len(data) > 7_000_000
    return data


# --- sniffing -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, expected", [
    ("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp"), ("GIF", "gif"), ("BMP", "bmp"), ("TIFF", "tiff"),
])
def test_sniff_format_names_real_images(fmt, expected):
    assert sniff_format(encode(Image.new("RGB", (4, 4)), fmt)) == expected


@pytest.mark.parametrize("data", [b"", b"<!doctype html><html></html>", b"\xff\xd8", b"RIFF\0\0\0\0WAVE", b"GIF88a"])
def test_sniff_format_rejects_other_bytes(data):
    assert sniff_format(data) is None


# --- the fast path ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode, fmt", [("RGB", "JPEG"), ("L", "JPEG"), ("RGB", "PNG"), ("L", "PNG")])
def test_plain_jpeg_or_png_is_sent_unchanged(mode, fmt):
    data = encode(two_tone().convert(mode), fmt)
    prepared = prepare_image(data)
    assert prepared.data is data and not prepared.changed
    assert (prepared.width, prepared.height) == (40, 20)
    assert_well_formed(prepared)


def test_jpeg_with_upright_exif_is_sent_unchanged():
    exif = Image.Exif()
    exif[ORIENTATION] = 1
    data = encode(two_tone(), "JPEG", exif=exif)
    assert prepare_image(data).data is data


def test_progressive_jpeg_becomes_baseline():
    prepared = prepare_image(encode(two_tone(), "JPEG", progressive=True))
    assert prepared.changed
    assert not decode(prepared.data).info.get("progressive")


# --- odd formats ------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, options", [
    ("WEBP", {"quality": 90}), ("BMP", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"}),
])
def test_other_formats_become_jpeg(fmt, options):
    prepared = prepare_image(encode(two_tone(), fmt, **options))
    out = assert_well_formed(prepared)
    assert prepared.changed and prepared.content_type == "image/jpeg"
    assert (out.width, out.height) == (40, 20)
    assert close(out.getpixel((5, 10)), (255, 0, 0)) and close(out.getpixel((35, 10)), (0, 0, 255))


def test_gif_uses_first_frame():
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    prepared = prepare_image(data)
    out = assert_well_formed(prepared)
    assert prepared.content_type == "image/jpeg"
    assert close(out.getpixel((10, 10)), (255, 0, 0))


@pytest.mark.parametrize("cmyk, rgb", [
    ((0, 255, 255, 0), (255, 0, 0)),
    ((255, 0, 255, 0), (0, 255, 0)),
    ((0, 0, 0, 0), (255, 255, 255)),
    ((0, 0, 0, 255), (0, 0, 0)),
])
def test_cmyk_jpeg_becomes_rgb_with_the_right_colours(cmyk, rgb):
    data = encode(Image.new("CMYK", (16, 16), cmyk), "JPEG", quality=95)
    assert decode(data).mode == "CMYK"
    prepared = prepare_image(data)
    out = assert_well_formed(prepared)
    assert prepared.content_type == "image/jpeg" and out.mode == "RGB"
    assert close(out.getpixel((8, 8)), rgb, tolerance=20)


def test_exif_rotated_jpeg_is_turned_upright_and_the_tag_dropped():
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # "rotate 90 degrees clockwise to display"
    prepared = prepare_image(encode(two_tone((40, 20)), "JPEG", exif=exif))
    out = assert_well_formed(prepared)
    assert prepared.changed and (prepared.width, prepared.height) == (20, 40)
    assert out.getexif().get(ORIENTATION) is None
    # The left (red) half ends up on top once rotated clockwise.
    assert close(out.getpixel((10, 5)), (255, 0, 0)) and close(out.getpixel((10, 35)), (0, 0, 255))


def test_exif_rotated_png_is_not_sent_as_is():
    exif = Image.Exif()
    exif[ORIENTATION] = 8
    prepared = prepare_image(encode(two_tone((40, 20)), "PNG", exif=exif))
    assert prepared.changed and (prepared.width, prepared.height) == (20, 40)


def test_16_bit_grey_png_is_scaled_to_8_bit():
    im = Image.new("I;16", (16, 16), 40000)
    im.paste(65535, (0, 0, 8, 16))
    data = encode(im, "PNG")
    assert decode(data).mode.startswith("I")
    out = assert_well_formed(prepare_image(data))
    assert out.mode == "L"
    assert abs(out.getpixel((12, 8)) - 40000 // 257) <= 3 and out.getpixel((2, 8)) >= 252


def test_16_bit_grey_png_with_a_transparent_key_becomes_rgba_png():
    im = Image.new("I;16", (8, 8), 40000)
    im.putpixel((0, 0), 1000)
    out = assert_well_formed(prepared := prepare_image(encode(im, "PNG", transparency=1000)))
    assert prepared.content_type == "image/png"
    assert out.getpixel((0, 0))[3] == 0 and out.getpixel((4, 4)) == (155, 155, 155, 255)


def test_16_bit_rgb_png_is_not_sent_as_is():
    raw = two_tone().convert("RGB")
    data = encode(raw, "PNG")
    # Rewrite the IHDR as 16-bit RGB by re-encoding the samples at double width.
    sixteen = b"".join(bytes([v, v]) for v in raw.tobytes())
    rows = [b"\0" + sixteen[y * 240:(y + 1) * 240] for y in range(20)]
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 40, 20, 16, 2, 0, 0, 0)
    idat = b"IDAT" + zlib.compress(b"".join(rows))
    chunk = lambda body: struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    data = data[:8] + chunk(ihdr) + chunk(idat) + chunk(b"IEND")
    prepared = prepare_image(data)
    out = assert_well_formed(prepared)
    assert prepared.changed and close(out.getpixel((5, 10)), (255, 0, 0))


def test_rgba_with_transparency_stays_png():
    im = two_tone().convert("RGBA")
    im.putpixel((0, 0), (255, 0, 0, 0))
    prepared = prepare_image(encode(im, "PNG"))
    out = assert_well_formed(prepared)
    assert prepared.content_type == "image/png" and out.mode == "RGBA"
    assert out.getpixel((0, 0))[3] == 0 and out.getpixel((30, 10)) == (0, 0, 255, 255)


def test_fully_opaque_rgba_becomes_jpeg():
    prepared = prepare_image(encode(two_tone().convert("RGBA"), "PNG"))
    assert prepared.content_type == "image/jpeg"
    assert_well_formed(prepared)


@pytest.mark.parametrize("alpha, content_type", [(128, "image/png"), (255, "image/jpeg")])
def test_grey_with_alpha(alpha, content_type):
    prepared = prepare_image(encode(Image.new("LA", (10, 10), (90, alpha)), "PNG"))
    out = assert_well_formed(prepared)
    assert prepared.content_type == content_type
    assert out.convert("LA").getpixel((5, 5)) == pytest.approx((90, alpha), abs=3)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_becomes_rgba_png(fmt):
    im = Image.new("P", (10, 10), 1)
    im.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    im.paste(0, (0, 0, 5, 10))
    prepared = prepare_image(encode(im, fmt, transparency=0))
    out = assert_well_formed(prepared)
    assert prepared.content_type == "image/png" and out.mode == "RGBA"
    assert out.getpixel((1, 1))[3] == 0 and out.getpixel((8, 8)) == (200, 30, 30, 255)


def test_palette_without_transparency_becomes_jpeg():
    prepared = prepare_image(encode(two_tone().convert("P"), "PNG"))
    assert prepared.content_type == "image/jpeg"
    assert_well_formed(prepared)


def test_matching_icc_profile_is_kept():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    prepared = prepare_image(encode(two_tone(), "WEBP", icc_profile=icc))
    assert decode(prepared.data).info.get("icc_profile") == icc


# --- size cap -------------------------------------------------------------------------------

def test_7mb_png_is_brought_under_the_cap(big_noise_png):
    prepared = prepare_image(big_noise_png)
    assert_well_formed(prepared)
    assert prepared.changed and prepared.content_type == "image/jpeg"


@pytest.mark.parametrize("max_bytes, downscaled", [(1_500_000, False), (400_000, True)])
def test_quality_then_size_steps_down_until_it_fits(big_noise_png, max_bytes, downscaled):
    prepared = prepare_image(big_noise_png, max_bytes=max_bytes)
    assert_well_formed(prepared, max_bytes)
    assert (prepared.width < 1600) is downscaled
    assert prepared.width / prepared.height == pytest.approx(1, abs=0.01)


def test_small_jpeg_over_a_tight_cap_is_reencoded():
    data = encode(noise("RGB", (300, 300)), "JPEG", quality=100)
    prepared = prepare_image(data, max_bytes=len(data) // 2)
    assert prepared.changed and len(prepared.data) <= len(data) // 2
    assert_well_formed(prepared, len(data) // 2)


def test_transparent_png_over_the_cap_stays_png():
    im = noise("RGBA", (400, 400))
    data = encode(im, "PNG")
    prepared = prepare_image(data, max_bytes=200_000)
    out = assert_well_formed(prepared, 200_000)
    assert prepared.content_type == "image/png" and out.mode == "RGBA"
    assert prepared.width < 400


def test_impossible_cap_is_an_image_error():
    with pytest.raises(ImageError, match="cannot shrink image below 100 bytes"):
        prepare_image(encode(noise("RGB", (64, 64)), "PNG"), max_bytes=100)


def test_output_is_deterministic(big_noise_png):
    webp = encode(two_tone(), "WEBP")
    assert prepare_image(webp) == prepare_image(webp)
    assert prepare_image(big_noise_png, max_bytes=400_000) == prepare_image(big_noise_png, max_bytes=400_000)


# --- refusals --------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", random.Random(5).randbytes(2048), b"<html>hello</html>"])
def test_garbage_is_an_image_error(data):
    with pytest.raises(ImageError, match=r"^not an image \(unrecognised bytes\)$"):
        prepare_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_truncated_image_is_an_image_error(fmt):
    data = encode(noise("RGB", (200, 200)), fmt)
    with pytest.raises(ImageError, match=f"^unreadable {sniff_format(data)} image"):
        prepare_image(data[: len(data) // 2])


def test_magic_bytes_without_an_image_is_an_image_error():
    with pytest.raises(ImageError, match="^unreadable bmp image"):
        prepare_image(b"BM" + b"\0" * 64)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("width, height", [(10_000, 10_000), (20_000, 20_000)])
def test_decompression_bomb_is_refused_without_decoding(width, height):
    with pytest.raises(ImageError, match="too large to decode safely"):
        prepare_image(png_with_size(width, height))


# --- property --------------------------------------------------------------------------------

SAVEABLE = {
    "JPEG": ["RGB", "L", "CMYK"],
    "PNG": ["RGB", "RGBA", "L", "LA", "P", "1", "I;16"],
    "WEBP": ["RGB", "RGBA"],
    "BMP": ["RGB", "L", "P", "1"],
    "TIFF": ["RGB", "RGBA", "L", "LA", "CMYK", "1", "I;16"],
    "GIF": ["P", "L"],
}
CASES = [(fmt, mode) for fmt, modes in SAVEABLE.items() for mode in modes]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(CASES), width=st.integers(1, 48), height=st.integers(1, 48),
       opaque=st.booleans(), data=st.data())
def test_any_small_image_comes_out_uploadable(case, width, height, opaque, data):
    fmt, mode = case
    pixels = bytearray(data.draw(st.binary(min_size=width * height * 4, max_size=width * height * 4)))
    if opaque:
        pixels[3::4] = b"\xff" * (width * height)
    source = Image.frombytes("RGBA", (width, height), bytes(pixels))
    im = source.convert("L").convert("I").convert("I;16") if mode == "I;16" else source.convert(mode)
    prepared = prepare_image(encode(im, fmt))
    out = assert_well_formed(prepared)
    assert out.size == (width, height)
    if prepared.content_type == "image/png" and prepared.changed:
        assert out.mode == "RGBA" and out.getchannel("A").getextrema()[0] < 255
