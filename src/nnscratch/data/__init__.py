"""Datasets and the preprocessing of raw inputs into a dataset's format."""

from .augment import RandomShift
from .datasets import DATASET_CHOICES, check_dataset_name, dataset_preprocessing, load_dataset
from .digits import DIGITS_MAX, Split, apply_preprocessing, digits_preprocessing, load_digits_split
from .images import image_to_digits8x8, image_to_mnist28x28
from .inputs import as_digit_rows, as_rows, input_format, load_digit_inputs, load_inputs

__all__ = ["DATASET_CHOICES", "DIGITS_MAX", "RandomShift", "Split", "apply_preprocessing", "as_digit_rows",
           "as_rows", "check_dataset_name", "dataset_preprocessing", "digits_preprocessing",
           "image_to_digits8x8", "image_to_mnist28x28", "input_format", "load_dataset",
           "load_digit_inputs", "load_digits_split", "load_inputs"]
