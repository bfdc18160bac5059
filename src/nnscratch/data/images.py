"""Turn a picture into a dataset's format, the way the dataset was made.

For MNIST (28x28) see :func:`mnist_format`; other image datasets are simply resized
(:func:`image_to_array`). For the 8x8 digits:

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

import io
import os
from typing import Any

import numpy as np

from ..errors import InputError


class _Pillow:
    """``PIL.Image``, imported at first use: importing nnscratch does not load Pillow."""

    def __getattr__(self, name: str) -> Any:
        from PIL import Image as module

        return getattr(module, name)


Image: Any = _Pillow()

BOX = 32    # side of the normalised bitmap
BLOCK = 4   # side of the blocks whose ink is counted: 32 / 4 = 8 features per side


#: the largest picture read (width x height); a 12000x12000 bitmap is refused before decoding.
#: (Pillow's own ``MAX_IMAGE_PIXELS`` is global state: it is left alone.)
MAX_PIXELS = 16_000_000
#: pictures larger than this are box-reduced to it right after decoding, so that the float
#: arrays of the conversion stay small (a digit needs far fewer pixels)
WORK_PIXELS = 1 << 20
#: the largest picture file read
MAX_FILE_BYTES = 64 << 20


def read_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file; unreadable files raise :class:`InputError` naming the file.

    The size in the header is checked against :data:`MAX_PIXELS` before any pixel is decoded;
    truncated or corrupt files (whatever Pillow's decoders raise) are refused in one line."""
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            raise InputError(f"{path}: larger than the {MAX_FILE_BYTES:,} bytes nnscratch reads "
                             "as a picture")
        with open(path, "rb") as f:
            # (from memory: a file object's read(n) would allocate whatever n a corrupt chunk
            # length asks for; BytesIO returns what there is)
            data = f.read()
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: not a readable image ({type(exc).__name__})") from None
    return read_image_bytes(data, str(path))


def read_image_bytes(data: bytes, source: str = "image",
                     formats: tuple[str, ...] | None = None) -> Image.Image:
    """Decode a picture held in memory, as :func:`read_image` does a file's (``nnscratch serve``
    reads uploaded pictures with it); ``formats`` (e.g. ("PNG", "JPEG")) limits what is read.
    Errors are :class:`InputError` naming ``source``."""
    import warnings

    what = f"a {' or '.join(formats)}" if formats else "a readable"
    try:
        with warnings.catch_warnings():   # (Pillow warns above its own, global, limit)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=formats)
        with img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise InputError(f"{source}: the picture is {w}x{h} pixels, more than the "
                                 f"{MAX_PIXELS:,} nnscratch reads (a decompression bomb?)")
            img.load()
            return _reduced(img) if w * h > WORK_PIXELS else img.copy()
    except InputError:
        raise
    except (MemoryError, Image.DecompressionBombError):
        raise InputError(f"{source}: not {what} image (too large)") from None
    except Exception as exc:  # noqa: BLE001 (Pillow's decoders raise SyntaxError, struct.error...)
        raise InputError(f"{source}: not {what} image ({type(exc).__name__})") from None


def _reduced(img: Image.Image) -> Image.Image:
    """``img`` box-averaged by whole factors to at most about :data:`WORK_PIXELS` pixels."""
    import math

    w, h = img.size
    if img.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        transparent = img.mode in ("PA", "RGBa", "La") or "transparency" in img.info
        img = img.convert("L" if img.mode == "1" else "RGBA" if transparent else "RGB")
    fx = min(w, math.ceil(math.sqrt(w * h / WORK_PIXELS)))
    fy = min(h, max(1, math.ceil(math.ceil(w / fx) * h / WORK_PIXELS)))
    return img.reduce((fx, fy))


def grey_levels(img: Image.Image) -> np.ndarray:
    """Grey levels in [0, 1] (H, W); transparent pixels become white."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("L"), dtype=np.float64) / 255.0


def ink_levels(grey: np.ndarray) -> np.ndarray:
    """Ink in [0, 1]: 0 for the background level, 1 for the strongest ink (step 2).

    The border of the picture is background: if it is light the ink is dark (ink = 1 - grey),
    otherwise light (ink = grey). Raises :class:`InputError` if there is no contrast.
    """
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    ink = 1.0 - grey if background > 0.5 else grey
    ink_bg = 1.0 - background if background > 0.5 else background
    strongest = float(ink.max())
    if strongest - ink_bg < 0.1:
        raise InputError("no digit found in the image (it is blank or has no contrast)")
    return np.clip((ink - ink_bg) / (strongest - ink_bg), 0.0, 1.0)


def ink_mask(grey: np.ndarray) -> np.ndarray:
    """Boolean mask of ink pixels: ink above the midpoint of background and strongest ink (3)."""
    return ink_levels(grey) > 0.5


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


def _as_image(img: Image.Image | str | os.PathLike[str], convert: Any) -> np.ndarray:
    """``convert(img)`` for a PIL image or a path, with errors naming the path."""
    if isinstance(img, Image.Image):
        return convert(img)
    picture = read_image(img)  # its errors already name the file
    try:
        return convert(picture)
    except InputError as exc:
        raise InputError(f"{img}: {exc}") from None


def image_to_digits8x8(img: Image.Image | str | os.PathLike[str]) -> np.ndarray:
    """A picture of one digit (any size, dark or light background) -> (8, 8) floats in 0..16."""
    return _as_image(img, lambda im: block_counts(normalised_bitmap(ink_mask(grey_levels(im))))
                     .astype(np.float64))


# -- MNIST's format ------------------------------------------------------------------------------
MNIST_SIDE = 28   # the image
MNIST_BOX = 20    # the box the digit is fitted into, keeping its aspect ratio


def mnist_format(ink: np.ndarray) -> np.ndarray:
    """Ink levels in [0, 1] (any size) -> a 28x28 MNIST-style digit, grey levels 0..255.

    As MNIST was made: crop to the ink, scale (anti-aliased, keeping the aspect ratio) so the
    longer side is 20 pixels, then place it in a 28x28 field so that its centre of mass falls on
    the centre pixel (14, 14). Light ink on a dark (0) background, as in MNIST.
    """
    from scipy import ndimage

    rows, cols = np.flatnonzero((ink > 0.2).any(axis=1)), np.flatnonzero((ink > 0.2).any(axis=0))
    if len(rows) == 0:
        raise InputError("no digit found in the image (it is blank or has no contrast)")
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].astype(np.float32)
    h, w = crop.shape
    scale = MNIST_BOX / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.asarray(Image.fromarray(crop, mode="F").resize((new_w, new_h),
                                                             Image.Resampling.LANCZOS))
    small = np.clip(small, 0.0, 1.0)
    # a field wide enough that any shift of the box stays inside it, then a 28x28 window
    # whose centre (14, 14) is the digit's centre of mass
    pad = MNIST_SIDE
    field = np.zeros((new_h + 2 * pad, new_w + 2 * pad))
    field[pad:pad + new_h, pad:pad + new_w] = small
    cy, cx = ndimage.center_of_mass(field)
    top, left = round(cy) - MNIST_SIDE // 2, round(cx) - MNIST_SIDE // 2
    return field[top:top + MNIST_SIDE, left:left + MNIST_SIDE] * 255.0


def image_to_mnist28x28(img: Image.Image | str | os.PathLike[str]) -> np.ndarray:
    """A picture of one digit (any size, dark or light background) -> (28, 28) floats 0..255."""
    return _as_image(img, lambda im: mnist_format(ink_levels(grey_levels(im))))


def image_to_array(img: Image.Image | str | os.PathLike[str], shape: tuple[int, int, int]) -> np.ndarray:
    """Any picture -> (C, H, W) floats 0..255: grey (C = 1) or RGB (C = 3), resized to H x W."""
    c, h, w = shape
    if c not in (1, 3):
        raise InputError(f"pictures can only be read as 1 (grey) or 3 (RGB) channels, the model "
                         f"takes {c}")

    def convert(im: Image.Image) -> np.ndarray:
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.LANCZOS)
        arr = np.asarray(im, dtype=np.float64)
        return arr[None] if c == 1 else arr.transpose(2, 0, 1)

    return _as_image(img, convert)
