"""What a sample is made of: images, 1-D signals and table features, and their encodings.

An input spec says how raw values become the arrays the model reads. Specs that learn from
data (the feature scaler and one-hot categories, a signal's per-channel mean and spread) are
fitted on the training split only and saved with the model, so serving applies exactly the
training-time encoding to raw values. Each kind lives in its own module; importing them here
registers them in :data:`INPUTS`.
"""

from mtl_models.inputs._base import (
    INPUTS,
    ColumnRef,
    InputConfig,
    InputError,
    InputSpec,
    InvalidRequest,
    Raw,
    ReadContext,
    TableSource,
    cell_text,
    input_from_dict,
    input_to_dict,
)
from mtl_models.inputs.features import FeatureInput, FeaturesInputConfig, parse_numbers
from mtl_models.inputs.image import ImageInput, ImageInputConfig, decode_image, encode_png
from mtl_models.inputs.signal import SignalInput, SignalInputConfig

__all__ = [
    "INPUTS",
    "ColumnRef",
    "FeatureInput",
    "FeaturesInputConfig",
    "ImageInput",
    "ImageInputConfig",
    "InputConfig",
    "InputError",
    "InputSpec",
    "InvalidRequest",
    "Raw",
    "ReadContext",
    "SignalInput",
    "SignalInputConfig",
    "TableSource",
    "cell_text",
    "decode_image",
    "encode_png",
    "input_from_dict",
    "input_to_dict",
    "parse_numbers",
]
