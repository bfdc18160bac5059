"""Datasets and the preprocessing of raw inputs into a dataset's format."""

from .augment import RandomShift
from .digits import DIGITS_MAX, Split, apply_preprocessing, digits_preprocessing, load_digits_split
from .images import image_to_digits8x8
from .inputs import as_digit_rows, load_digit_inputs

__all__ = ["DIGITS_MAX", "RandomShift", "Split", "apply_preprocessing", "as_digit_rows",
           "digits_preprocessing", "image_to_digits8x8", "load_digit_inputs", "load_digits_split"]
