"""Is the product in the output the product of the source photo? A score from 0 to 1 and its parts.

    score = measure(source_bytes, output_bytes)
    score.fidelity, score.ssim, score.delta_e, score.iou, score.note   # note: why there is no score

1. The product's mask comes from the source, whose background is plain: pixels far (CIE76 ΔE) from
   the border's median colour, or its alpha. A busy border, or no product apart from it, gives no
   score and a note: we do not guess.
2. Alignment: the output may be larger or smaller and shifted. The edges (gradient magnitude) of the
   source's product are matched (normalised cross-correlation, OpenCV) against the output's at scales
   around the sizes' ratio, then finer.
3. Inside the mask: SSIM of the luminance, the mean CIEDE2000 ΔE (both scikit-image's), and the IoU
   of the silhouettes (the output's taken inside the source's: see `_silhouette_iou`).

Everything runs at WORK_SIDE px at most (JPEGs decoded at a reduced DCT scale; a smaller source at
MIN_SIDE, not more), and the metrics on the product's box only: 2-20 ms of CPU a picture by its size
and format (docs/fidelity.md). The colour conversion, morphology and warp are OpenCV's; the metrics
stay scikit-image's.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
from PIL import Image, ImageOps
from skimage.color import deltaE_cie76, deltaE_ciede2000
from skimage.metrics import structural_similarity

WORK_SIDE = 160          # the comparison's long side, in pixels, at most
MIN_SIDE = 160          # a smaller source is scaled up to this (as #22 calibrated): at 80-96 px SSIM dropped on flat products
BORDER = 0.04            # the share of each side read as the source's background
BUSY_SHARE = 0.12        # more border pixels than this far from its median colour: a busy source
COVERAGE = (0.005, 0.85)  # a product covers this share of its photo, or the cut-out failed
# The product's scale is searched near the sizes' ratio (the whole picture scaled, as generators do);
# a product kept at its size on a larger canvas is held, never passed. (A second guess at scale 1
# won wrongly on round products: a smaller template correlates more easily.)
SCALES = tuple(0.88 * (1.12 / 0.88) ** (i / 6) for i in range(7))  # np.geomspace(0.88, 1.12, 7)
FINE = (0.975, 1.025)    # then either side of the best, finer
# A match at the prior this sharp is the product, whole picture scaled: the other coarse scales are not
# tried (faithful outputs correlate at 0.80-0.87 there, altered ones mostly below; docs/fidelity.md).
SHARP = 0.75
AGREE_DE = 12.0          # a pixel this close (CIEDE2000) to the source's is the product's
SIL_SSIM = 0.5           # so is one this alike in local structure (a recoloured product keeps its shape)
SSIM_WIN = 7
# What each part must reach to count as faithful, fitted on the sandbox's labelled outputs (docs/fidelity.md).
SSIM_GOOD, SSIM_BAD = 0.80, 0.35
DE_GOOD, DE_BAD = 6.0, 20.0
IOU_GOOD, IOU_BAD = 0.90, 0.55
CHANGED_GOOD, CHANGED_BAD = 0.05, 0.25
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))  # scipy.ndimage's default structure


@dataclass(frozen=True)
class Score:
    fidelity: float | None       # 0..1; None when it cannot be measured (see note)
    ssim: float | None = None
    delta_e: float | None = None
    iou: float | None = None
    scale: float | None = None   # the output's product size over the source's
    offset: tuple[int, int] | None = None  # where the source's top-left lands in the output, in output px
    note: str | None = None
    heatmap: bytes | None = None  # PNG: the ΔE inside the mask, when asked for

    def as_row(self) -> dict:
        """The checkpoint's fields of this score."""
        r = lambda v, n: None if v is None else round(float(v), n)  # noqa: E731
        return {"fidelity": r(self.fidelity, 4), "fidelity_ssim": r(self.ssim, 4),
                "fidelity_delta_e": r(self.delta_e, 3), "fidelity_iou": r(self.iou, 4),
                "fidelity_note": self.note}


class Unscorable(ValueError):
    """No product mask can be cut from the source; the message says why."""


def _load(data: bytes, fit: Callable[[tuple[int, int]], int]) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """(RGB float image fitted in `fit(its full size)` px, alpha mask or None, the picture's full size)."""
    with Image.open(io.BytesIO(data)) as im:
        full = im.size
        orientation = im.getexif().get(0x0112, 1)
        if orientation in (5, 6, 7, 8):
            full = (full[1], full[0])
        side = fit(full)
        # A plain JPEG, or a small PNG: OpenCV decodes it. (PIL's reduce() shrinks a large PNG faster.)
        if orientation == 1 and im.mode in ("RGB", "L") and (
                im.format == "JPEG" or (im.format == "PNG" and max(full) <= 2 * side)):
            return _decoded(data, im.size, side, im.format == "JPEG"), None, full
        if im.format == "JPEG":
            im.draft("RGB", (side, side))  # decode at 1/2, 1/4 or 1/8 scale: most of the CPU saved
        if orientation != 1:
            im = ImageOps.exif_transpose(im)
        alpha = None
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            a = rgba.getchannel("A")
            if a.getextrema()[0] < 250:
                alpha = a
            im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        im = im.convert("RGB")
        scale = side / max(im.size)
        size = (max(8, round(im.width * scale)), max(8, round(im.height * scale)))
        if size != im.size:
            im = im.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        mask = None
        if alpha is not None:
            mask = np.asarray(alpha.resize(size, Image.Resampling.BILINEAR) if alpha.size != size else alpha) > 127
    return np.asarray(im, dtype=np.float32) * np.float32(1 / 255), mask, full


def _decoded(data: bytes, size: tuple[int, int], side: int, jpeg: bool) -> np.ndarray:
    """A plain RGB or grey JPEG/PNG fitted in `side` px, decoded by OpenCV (a JPEG at the reduced DCT
    scale PIL's draft would pick): a third of PIL's CPU at these sizes, the same pixels to within its
    resampling (0.1 % on average)."""
    reduce = 1
    if jpeg:
        while reduce < 8 and min(size) // (reduce * 2) >= side * min(size) / max(size):
            reduce *= 2
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}[reduce] | cv2.IMREAD_IGNORE_ORIENTATION
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if bgr is None:
        raise ValueError("the picture does not decode")
    h, w = bgr.shape[:2]
    scale = side / max(w, h)
    target = (max(8, round(w * scale)), max(8, round(h * scale)))
    if target != (w, h):
        bgr = cv2.resize(bgr, target, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) * np.float32(1 / 255)


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65; L 0..100) of an RGB float image in 0..1: OpenCV's, 3x scikit-image's speed."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)


def _morph(mask: np.ndarray, op: int, iterations: int) -> np.ndarray:
    """scipy.ndimage's binary erosion/dilation (cross, `iterations` times, outside the picture False)."""
    out = cv2.morphologyEx(mask.view(np.uint8), op, _CROSS, iterations=iterations,
                           borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.view(bool)


def _opened(mask: np.ndarray) -> np.ndarray:
    return _morph(_morph(mask, cv2.MORPH_ERODE, 1), cv2.MORPH_DILATE, 1)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every region it encloses (background not reached from the border, 4-connected)."""
    h, w = mask.shape
    canvas = np.zeros((h + 2, w + 2), np.uint8)
    canvas[1:-1, 1:-1] = mask
    cv2.floodFill(canvas, None, (0, 0), 2, flags=4)
    return canvas[1:-1, 1:-1] != 2


def product_mask(rgb: np.ndarray, alpha: np.ndarray | None = None, lab: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the product in a photo on a plain background; Unscorable if it has none."""
    if alpha is not None:
        mask = alpha
    else:
        h, w = rgb.shape[:2]
        b = max(2, round(min(h, w) * BORDER))
        border = np.concatenate([rgb[:b].reshape(-1, 3), rgb[-b:].reshape(-1, 3),
                                 rgb[:, :b].reshape(-1, 3), rgb[:, -b:].reshape(-1, 3)])
        lab = _lab(rgb) if lab is None else lab
        ground = _lab(np.median(border, axis=0).astype(np.float32).reshape(1, 1, 3))
        distance = deltaE_cie76(lab, ground)
        edge = np.concatenate([distance[:b].ravel(), distance[-b:].ravel(),
                               distance[:, :b].ravel(), distance[:, -b:].ravel()])
        if np.mean(edge > 12.0) > BUSY_SHARE:
            raise Unscorable("busy source background: no plain background to cut the product from")
        threshold = max(8.0, float(np.percentile(edge, 98)) + 4.0)
        mask = _opened(distance > threshold)
        closed = _morph(_morph(mask, cv2.MORPH_DILATE, 2), cv2.MORPH_ERODE, 2)
        mask = _fill_holes(closed)
    coverage = float(mask.mean())
    if not COVERAGE[0] <= coverage <= COVERAGE[1]:
        raise Unscorable(f"no product apart from the source's background (it covers {coverage:.1%})")
    return mask


def _edges(grey: np.ndarray) -> np.ndarray:
    """Gradient magnitude, a little blurred: a silhouette's edge whatever the background's brightness."""
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.GaussianBlur(cv2.magnitude(gx, gy), (5, 5), 1.0)


def _resized(a: np.ndarray, factor: float) -> np.ndarray:
    h, w = a.shape[:2]
    return cv2.resize(a, (max(4, round(w * factor)), max(4, round(h * factor))), interpolation=cv2.INTER_AREA
                      if factor < 1 else cv2.INTER_LINEAR)


def _match(grey: np.ndarray, template: np.ndarray, s: float) -> tuple[float, float, float, float] | None:
    """(correlation, s, x, y) of the best match of `template` scaled by `s`; None if it does not fit."""
    t = _resized(template, s)
    if t.shape[0] > grey.shape[0] or t.shape[1] > grey.shape[1] or min(t.shape) < 4:
        return None
    surface = cv2.matchTemplate(grey, t, cv2.TM_CCOEFF_NORMED)
    _, peak, _, (x, y) = cv2.minMaxLoc(surface)
    return float(peak), float(s), x + _vertex(surface[y, x - 1:x + 2]), y + _vertex(surface[y - 1:y + 2, x])


def _vertex(three: np.ndarray) -> float:
    """Where a parabola through three neighbouring values peaks, from the middle one (-0.5..0.5): the
    match's position to a fraction of a pixel, which SSIM at WORK_SIDE px notices."""
    if len(three) != 3:
        return 0.0  # the peak is on the surface's edge
    a, b, c = (float(v) for v in three)
    curve = a - 2 * b + c
    return 0.0 if curve >= 0 else max(-0.5, min(0.5, 0.5 * (a - c) / curve))


def _best(grey: np.ndarray, template: np.ndarray, scales, best=(-2.0, 1.0, 0, 0)) -> tuple[float, float, int, int]:
    """(correlation, scale, x, y) of the best match of `template` scaled by each of `scales`."""
    for s in scales:
        found = _match(grey, template, s)
        if found is not None and found[0] > best[0]:
            best = found
    return best


def align(src: np.ndarray, mask: np.ndarray, out: np.ndarray) -> tuple[float, float, float]:
    """(scale, tx, ty): the source's pixel (x, y) is the output's (scale*x + tx, scale*y + ty)."""
    y0, y1, x0, x1 = _box(mask, 3)  # the silhouette's outer edge belongs to the template
    # Edges, not brightness: a flat product's template is its outline, and a new background darker or
    # lighter than the old one correlates the same.
    template = _edges(_grey(src))[y0:y1, x0:x1]
    grey = _edges(_grey(out))
    ratio = out.shape[1] / src.shape[1]     # the prior: the whole picture scaled
    best = _best(grey, template, [ratio])
    if best[0] < SHARP:
        best = _best(grey, template, [ratio * k for k in SCALES if k != 1.0], best)
    _, s, x, y = _best(grey, template, [best[1] * k for k in FINE], best)
    return s, x - s * x0, y - s * y0


def _box(mask: np.ndarray, pad: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the mask's bounding box grown by `pad`, within the picture."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    rows, cols = mask.shape
    return max(0, y - pad), min(rows, y + h + pad), max(0, x - pad), min(cols, x + w + pad)


def measure(source: bytes, output: bytes, *, heatmap: bool = False, heatmap_below: float | None = None) -> Score:
    """The fidelity of `output` to `source`; a Score with a note instead when it cannot be told.
    The heat-map PNG is drawn when asked for (`heatmap`), or only for a score below `heatmap_below`
    (the gate's threshold: drawing it costs as much again as the score, and a faithful output's is
    never shown)."""
    src, alpha, src_full = _load(source, lambda full: min(WORK_SIDE, max(MIN_SIDE, max(full))))
    lab_src = _lab(src)
    try:
        mask = product_mask(src, alpha, lab_src)
    except Unscorable as exc:
        return Score(None, note=str(exc))
    # The output at the same pixel scale as the source's work copy, so a 1.25x output stays 1.25x.
    factor = max(src.shape[:2]) / max(src_full)
    out, _, _ = _load(output, lambda full: max(8, round(max(full) * factor)))
    scale, tx, ty = align(src, mask, out)
    # Everything below reads the product's box only (grown by the SSIM window, so the map inside the
    # mask is the whole picture's): the output is warped into the source's frame there.
    y0, y1, x0, x1 = _box(mask, SSIM_WIN)
    warp = np.array([[scale, 0, tx + scale * x0], [0, scale, ty + scale * y0]], dtype=np.float32)
    aligned = cv2.warpAffine(out, warp, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
    box = (slice(y0, y1), slice(x0, x1))
    inner = _morph(mask, cv2.MORPH_ERODE, 2)
    if inner.sum() < 16:
        inner = mask
    src_box, mask_box, inner_box = src[box], mask[box], inner[box]
    _, ssim_map = structural_similarity(_grey(src_box), _grey(aligned), data_range=1.0, win_size=SSIM_WIN,
                                        full=True)
    ssim = float(ssim_map[inner_box].mean())
    # CIEDE2000 on the product's pixels only: nothing outside the mask is read.
    de = deltaE_ciede2000(lab_src[box][mask_box], _lab(aligned)[mask_box])
    de_map = np.zeros(mask_box.shape, np.float32)
    de_map[mask_box] = de
    de_inner = de_map[inner_box]
    delta_e = float(de_inner.mean())
    iou = _silhouette_iou(mask_box, ssim_map, de_map)
    # The colour part: the mean ΔE, and the share of the product changed by more than AGREE_DE (a
    # mirrored logo is a small part of the product, but all of it changed).
    changed = float(np.mean(de_inner > AGREE_DE))
    colour = min(_part(delta_e, DE_BAD, DE_GOOD), _part(changed, CHANGED_BAD, CHANGED_GOOD))
    parts = (_part(ssim, SSIM_BAD, SSIM_GOOD), colour, _part(iou, IOU_BAD, IOU_GOOD))
    fidelity = float(min(parts))  # one part gone wrong is enough: a recoloured product has its shape
    offset = (round(tx / factor), round(ty / factor))
    heat = None
    if heatmap or (heatmap_below is not None and fidelity < heatmap_below):
        full_de = np.zeros(mask.shape, np.float32)
        full_de[box] = de_map
        heat = _heatmap(src, full_de, mask)
    return Score(fidelity, ssim, delta_e, iou, scale, offset, heatmap=heat)


def _grey(rgb: np.ndarray) -> np.ndarray:
    """Luma (0.299 R + 0.587 G + 0.114 B), OpenCV's: a fifth of numpy's matrix product here."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _part(value: float, bad: float, good: float) -> float:
    """0 at `bad`, 1 at `good`, linear between (either may be the larger)."""
    if math.isnan(value):
        return 0.0
    return float(np.clip((value - bad) / (good - bad), 0.0, 1.0))


def _silhouette_iou(mask: np.ndarray, ssim_map: np.ndarray, de_map: np.ndarray) -> float:
    """IoU of the source's silhouette and the output's, taken as the source's pixels that the output
    still fills with the product: alike in structure (SSIM) or in colour (ΔE). A squashed or mirrored
    product leaves background where the source had product, so the two part there."""
    filled = mask & ((ssim_map > SIL_SSIM) | (de_map < AGREE_DE))
    filled = _opened(filled) & mask
    union = np.logical_or(filled, mask).sum()
    return float(np.logical_and(filled, mask).sum() / union) if union else 0.0


def _heatmap(src: np.ndarray, de_map: np.ndarray, mask: np.ndarray) -> bytes:
    """A PNG: the source greyed, the product's ΔE from yellow (small) to red (20 and more) over it."""
    grey = np.repeat(_grey(src)[..., None], 3, axis=2) * 0.5 + 0.25
    t = np.clip(de_map / DE_BAD, 0.0, 1.0)[..., None]
    heat = np.concatenate([np.ones_like(t), 1.0 - t, np.zeros_like(t)], axis=2)  # yellow -> red
    img = np.where(mask[..., None], 0.25 * grey + 0.75 * heat, grey)
    buffer = io.BytesIO()
    Image.fromarray((img * 255).astype(np.uint8)).resize(
        (src.shape[1] * 2, src.shape[0] * 2), Image.Resampling.NEAREST).save(buffer, "PNG", optimize=False)
    return buffer.getvalue()
