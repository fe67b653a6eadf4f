"""Map small or differently sized digits onto MNIST's 28×28 convention.

MNIST digits were size-normalised to fit a 20×20 box keeping their aspect ratio (anti-aliased), then
placed in a 28×28 image so that their centre of mass lies at the centre (LeCun et al.).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def mnist_style(images: np.ndarray, box: int = 20, size: int = 28) -> np.ndarray:
    """Float images (N, H, W) in [0, 1] → (N, 28, 28) float32, MNIST-style framed and centred."""
    out = np.zeros((len(images), size, size), dtype=np.float32)
    for i, img in enumerate(np.asarray(images, dtype=np.float32)):
        out[i] = _frame_one(img, box, size)
    return out


def _frame_one(img: np.ndarray, box: int, size: int) -> np.ndarray:
    rows = np.flatnonzero(img.max(1) > 0)
    cols = np.flatnonzero(img.max(0) > 0)
    canvas = np.zeros((size, size), dtype=np.float32)
    if rows.size == 0:
        return canvas
    crop = img[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = F.interpolate(torch.from_numpy(crop)[None, None], size=(new_h, new_w), mode="bilinear",
                            align_corners=False, antialias=True)[0, 0].numpy()
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top: top + new_h, left: left + new_w] = resized
    cy, cx = ndimage.center_of_mass(canvas)
    shifted = ndimage.shift(canvas, ((size - 1) / 2 - cy, (size - 1) / 2 - cx), order=1, mode="constant")
    return np.clip(shifted, 0.0, 1.0)


def to_greyscale(rgb: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 → (N, H, W) float32 in [0, 1] with ITU-R 601 luma weights."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return (rgb.astype(np.float32) @ weights) / 255.0


def resize(images: np.ndarray, size: int = 28) -> np.ndarray:
    """(N, H, W) float → (N, size, size) float32, anti-aliased bilinear."""
    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[:, 0].clamp(0, 1).numpy()
