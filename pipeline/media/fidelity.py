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

Everything runs at WORK_SIDE px (JPEGs decoded at a reduced DCT scale): ~20 ms of CPU a picture.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage
from skimage.color import deltaE_cie76, deltaE_ciede2000, rgb2lab
from skimage.metrics import structural_similarity
from skimage.transform import AffineTransform, warp

from pipeline.store.atomic import write_atomically

WORK_SIDE = 160          # the comparison's long side, in pixels
BORDER = 0.04            # the share of each side read as the source's background
BUSY_SHARE = 0.12        # more border pixels than this far from its median colour: a busy source
COVERAGE = (0.005, 0.85)  # a product covers this share of its photo, or the cut-out failed
# The product's scale is searched near the sizes' ratio (the whole picture scaled, as generators do);
# a product kept at its size on a larger canvas is held, never passed. (A second guess at scale 1
# won wrongly on round products: a smaller template correlates more easily.)
SCALES = np.geomspace(0.88, 1.12, 7)
AGREE_DE = 12.0          # a pixel this close (CIEDE2000) to the source's is the product's
SIL_SSIM = 0.5           # so is one this alike in local structure (a recoloured product keeps its shape)
# What each part must reach to count as faithful, fitted on the sandbox's labelled outputs (docs/fidelity.md).
SSIM_GOOD, SSIM_BAD = 0.80, 0.35
DE_GOOD, DE_BAD = 6.0, 20.0
IOU_GOOD, IOU_BAD = 0.90, 0.55
CHANGED_GOOD, CHANGED_BAD = 0.05, 0.25


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


def _load(data: bytes, side: int) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """(RGB float image fitted in `side`, alpha mask or None, the picture's full size)."""
    with Image.open(io.BytesIO(data)) as im:
        full = im.size
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            full = (full[1], full[0])
        if im.format == "JPEG":
            im.draft("RGB", (side, side))  # decode at 1/2, 1/4 or 1/8 scale: most of the CPU saved
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
        im = im.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        mask = None if alpha is None else np.asarray(alpha.resize(size, Image.Resampling.BILINEAR)) > 127
    return np.asarray(im, dtype=np.float32) / 255.0, mask, full


def product_mask(rgb: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the product in a photo on a plain background; Unscorable if it has none."""
    if alpha is not None:
        mask = alpha
    else:
        h, w = rgb.shape[:2]
        b = max(2, round(min(h, w) * BORDER))
        border = np.concatenate([rgb[:b].reshape(-1, 3), rgb[-b:].reshape(-1, 3),
                                 rgb[:, :b].reshape(-1, 3), rgb[:, -b:].reshape(-1, 3)])
        lab = rgb2lab(rgb)
        ground = rgb2lab(np.median(border, axis=0).reshape(1, 1, 3))
        distance = deltaE_cie76(lab, ground)
        edge = np.concatenate([distance[:b].ravel(), distance[-b:].ravel(),
                               distance[:, :b].ravel(), distance[:, -b:].ravel()])
        if np.mean(edge > 12.0) > BUSY_SHARE:
            raise Unscorable("busy source background: no plain background to cut the product from")
        threshold = max(8.0, float(np.percentile(edge, 98)) + 4.0)
        mask = ndimage.binary_opening(distance > threshold, iterations=1)
        mask = ndimage.binary_fill_holes(ndimage.binary_closing(mask, iterations=2))
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


def _best(grey: np.ndarray, template: np.ndarray, scales) -> tuple[float, float, int, int]:
    """(correlation, scale, x, y) of the best match of `template` scaled by each of `scales`."""
    best = (-2.0, 1.0, 0, 0)
    for s in scales:
        t = _resized(template, s)
        if t.shape[0] > grey.shape[0] or t.shape[1] > grey.shape[1] or min(t.shape) < 4:
            continue
        _, peak, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(grey, t, cv2.TM_CCOEFF_NORMED))
        if peak > best[0]:
            best = (float(peak), float(s), int(x), int(y))
    return best


def align(src: np.ndarray, mask: np.ndarray, out: np.ndarray) -> tuple[float, float, float]:
    """(scale, tx, ty): the source's pixel (x, y) is the output's (scale*x + tx, scale*y + ty)."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    pad = 3  # the silhouette's outer edge belongs to the template
    box = (max(0, int(ys.min()) - pad), min(h, int(ys.max()) + 1 + pad),
           max(0, int(xs.min()) - pad), min(w, int(xs.max()) + 1 + pad))
    # Edges, not brightness: a flat product's template is its outline, and a new background darker or
    # lighter than the old one correlates the same.
    template = _edges(_grey(src))[box[0]:box[1], box[2]:box[3]]
    grey = _edges(_grey(out))
    ratio = out.shape[1] / src.shape[1]     # the prior: the whole picture scaled
    _, s, _, _ = _best(grey, template, [ratio * k for k in SCALES])
    _, s, x, y = _best(grey, template, s * np.geomspace(0.975, 1.025, 3))
    return s, x - s * box[2], y - s * box[0]


def measure(source: bytes, output: bytes, *, heatmap: bool = False) -> Score:
    """The fidelity of `output` to `source`; a Score with a note instead when it cannot be told."""
    src, alpha, src_full = _load(source, WORK_SIDE)
    try:
        mask = product_mask(src, alpha)
    except Unscorable as exc:
        return Score(None, note=str(exc))
    # The output at the same pixel scale as the source's work copy, so a 1.25x output stays 1.25x.
    with Image.open(io.BytesIO(output)) as probe:
        out_full = probe.size
    factor = max(src.shape[:2]) / max(src_full)
    out, _, _ = _load(output, max(8, round(max(out_full) * factor)))
    scale, tx, ty = align(src, mask, out)
    aligned = warp(out, AffineTransform(scale=scale, translation=(tx, ty)), output_shape=src.shape[:2],
                   order=1, mode="edge").astype(np.float32)
    inner = ndimage.binary_erosion(mask, iterations=2)
    if inner.sum() < 16:
        inner = mask
    _, ssim_map = structural_similarity(_grey(src), _grey(aligned), data_range=1.0, win_size=7, full=True)
    ssim = float(ssim_map[inner].mean())
    lab_src, lab_out = rgb2lab(src), rgb2lab(aligned)
    de_map = deltaE_ciede2000(lab_src, lab_out)
    delta_e = float(de_map[inner].mean())
    iou = _silhouette_iou(mask, ssim_map, de_map)
    # The colour part: the mean ΔE, and the share of the product changed by more than AGREE_DE (a
    # mirrored logo is a small part of the product, but all of it changed).
    changed = float(np.mean(de_map[inner] > AGREE_DE))
    colour = min(_part(delta_e, DE_BAD, DE_GOOD), _part(changed, CHANGED_BAD, CHANGED_GOOD))
    parts = (_part(ssim, SSIM_BAD, SSIM_GOOD), colour, _part(iou, IOU_BAD, IOU_GOOD))
    fidelity = float(min(parts))  # one part gone wrong is enough: a recoloured product has its shape
    offset = (round(tx / factor), round(ty / factor))
    return Score(fidelity, ssim, delta_e, iou, scale, offset, heatmap=_heatmap(src, de_map, mask) if heatmap else None)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


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
    filled = ndimage.binary_opening(filled, iterations=1) & mask
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


def score_files(source: str, output: str | bytes, min_fidelity: float, heatmap_path: str | None) -> dict:
    """In a worker process: the checkpoint's fields for one output; a held one's heat-map written to
    `heatmap_path` (PNG). A picture that cannot be read is a note, not a crash of the pool."""
    try:
        with open(source, "rb") as fh:
            src = fh.read()
        if isinstance(output, str):
            with open(output, "rb") as fh:
                output = fh.read()
        score = measure(src, output, heatmap=heatmap_path is not None)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return Score(None, note=f"fidelity not measured: {type(exc).__name__}: {exc}").as_row()
    held = score.fidelity is not None and score.fidelity < min_fidelity
    if held and heatmap_path is not None and score.heatmap:
        write_atomically(Path(heatmap_path), score.heatmap)
    return score.as_row()
