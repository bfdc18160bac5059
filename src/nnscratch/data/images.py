"""Turn a picture of a digit into the 8x8 digits format, the way the dataset was made.

The UCI/scikit-learn digits come from 32x32 binary bitmaps of handwritten digits, each divided
into 64 non-overlapping 4x4 blocks whose count of ink pixels (0..16) is one feature. We redo that
on any picture:

1. grey levels in [0, 1]; transparent pixels count as background;
2. decide which side is ink: the border of the picture is background, so if the border is light
   the ink is dark (ink = 1 - grey) and otherwise light (ink = grey);
3. binarise at the midpoint between the background level and the strongest ink;
4. crop to the bounding box of the ink;
5. scale it, keeping its aspect ratio, so the longer side is 32 pixels, and centre it in a 32x32
   box (binarising again after the resampling);
6. count the ink pixels in each 4x4 block -> an 8x8 array of integers 0..16.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError

BOX = 32    # side of the normalised bitmap
BLOCK = 4   # side of the blocks whose ink is counted: 32 / 4 = 8 features per side


def read_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file; unreadable files raise :class:`InputError` naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: not a readable image ({type(exc).__name__})") from None


def grey_levels(img: Image.Image) -> np.ndarray:
    """Grey levels in [0, 1] (H, W); transparent pixels become white."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("L"), dtype=np.float64) / 255.0


def ink_mask(grey: np.ndarray) -> np.ndarray:
    """Boolean mask of ink pixels (steps 2 and 3)."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    ink = 1.0 - grey if background > 0.5 else grey
    ink_bg = 1.0 - background if background > 0.5 else background
    strongest = float(ink.max())
    if strongest - ink_bg < 0.1:
        raise InputError("no digit found in the image (it is blank or has no contrast)")
    return ink > (ink_bg + strongest) / 2


def normalised_bitmap(mask: np.ndarray, box: int = BOX) -> np.ndarray:
    """Crop ``mask`` to its ink and fit it, centred, into a ``box`` x ``box`` binary bitmap."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = Image.fromarray((crop * 255).astype(np.uint8)).resize((new_w, new_h),
                                                                    Image.Resampling.BILINEAR)
    out = np.zeros((box, box), dtype=bool)
    top, left = (box - new_h) // 2, (box - new_w) // 2
    out[top:top + new_h, left:left + new_w] = np.asarray(resized) >= 128
    return out


def block_counts(bitmap: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Ink pixels in each ``block`` x ``block`` tile: (32, 32) bool -> (8, 8) ints 0..16."""
    n = bitmap.shape[0] // block
    return bitmap.reshape(n, block, n, block).sum(axis=(1, 3))


def image_to_digits8x8(img: Image.Image | str | os.PathLike[str]) -> np.ndarray:
    """A picture of one digit (any size, dark or light background) -> (8, 8) floats in 0..16."""
    if not isinstance(img, Image.Image):
        path, img = img, read_image(img)
        try:
            return image_to_digits8x8(img)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
    return block_counts(normalised_bitmap(ink_mask(grey_levels(img)))).astype(np.float64)
