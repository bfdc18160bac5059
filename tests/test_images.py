"""Pictures of digits become the dataset's 8x8 format the way the dataset was made."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nnscratch import InputError
from nnscratch.data import image_to_digits8x8
from nnscratch.data.images import block_counts, normalised_bitmap


def _picture(digit8x8, size=160, dark_on_light=True, margin=30, mode="L"):
    """Render an 8x8 0..16 digit as a big smooth grey picture with a margin."""
    ink = Image.fromarray((np.asarray(digit8x8) / 16 * 255).astype(np.uint8))
    ink = np.asarray(ink.resize((size, size), Image.Resampling.BICUBIC), dtype=float) / 255
    canvas = np.zeros((size + 2 * margin, size + 2 * margin + 17))
    canvas[margin:margin + size, margin + 5:margin + 5 + size] = ink
    grey = 1 - canvas if dark_on_light else canvas
    img = Image.fromarray((grey * 255).clip(0, 255).astype(np.uint8))
    return img.convert(mode)


def test_block_counts_count_ink_in_4x4_tiles():
    bitmap = np.zeros((32, 32), dtype=bool)
    bitmap[0:4, 0:4] = True          # a full tile: 16
    bitmap[4, 4] = True              # one pixel: 1
    counts = block_counts(bitmap)
    assert counts.shape == (8, 8) and counts[0, 0] == 16 and counts[1, 1] == 1
    assert counts.sum() == 17


def test_normalised_bitmap_fills_32_high_keeps_aspect_and_centres():
    mask = np.zeros((100, 100), dtype=bool)
    mask[10:90, 40:60] = True  # 80 high, 20 wide
    box = normalised_bitmap(mask)
    rows, cols = np.flatnonzero(box.any(axis=1)), np.flatnonzero(box.any(axis=0))
    assert rows[0] == 0 and rows[-1] == 31       # the longer side fills the box
    assert cols[-1] - cols[0] + 1 == 8           # 20 * 32 / 80
    assert cols[0] == 12                          # centred: (32 - 8) // 2


@pytest.mark.parametrize("dark_on_light", [True, False])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_round_trip_of_dataset_digits_predicts_the_same(trained_model, split, dark_on_light, mode):
    X, y = split.X_test[:40], split.y_test[:40]
    feats = np.stack([image_to_digits8x8(_picture(d.reshape(8, 8), dark_on_light=dark_on_light,
                                                  mode=mode)).ravel() for d in X])
    assert feats.min() >= 0 and feats.max() <= 16
    corr = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(feats, X, strict=True)])
    assert corr > 0.8, corr
    agree = (trained_model.predict(feats / 16) == y).mean()
    assert agree >= 0.8, agree


def test_background_polarity_and_size_do_not_matter(split):
    d = split.X_test[3].reshape(8, 8)
    a = image_to_digits8x8(_picture(d, size=64, dark_on_light=True))
    b = image_to_digits8x8(_picture(d, size=64, dark_on_light=False))
    c = image_to_digits8x8(_picture(d, size=400, dark_on_light=True))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() < 1.5


def test_transparent_background_counts_as_background(split):
    d = split.X_test[5].reshape(8, 8)
    grey = _picture(d, dark_on_light=False)          # white ink on black
    alpha = np.asarray(grey)                         # opaque where the ink is
    rgba = np.zeros(alpha.shape + (4,), dtype=np.uint8)
    rgba[..., 3] = alpha                             # black ink, transparent elsewhere
    from_rgba = image_to_digits8x8(Image.fromarray(rgba, "RGBA"))
    np.testing.assert_array_equal(from_rgba, image_to_digits8x8(_picture(d)))


def test_blank_image_is_rejected():
    with pytest.raises(InputError, match="no digit"):
        image_to_digits8x8(Image.new("L", (50, 50), 255))


def test_blank_image_file_error_names_the_file(tmp_path):
    Image.new("L", (50, 50), 0).save(tmp_path / "black.png")
    with pytest.raises(InputError, match="black.png: no digit"):
        image_to_digits8x8(tmp_path / "black.png")


def test_decompression_bomb_is_a_clear_error(tmp_path):
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")
    with pytest.raises(InputError, match="bomb.png: not a readable image"):
        image_to_digits8x8(tmp_path / "bomb.png")


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(InputError, match="broken.png: not a readable image"):
        image_to_digits8x8(bad)
