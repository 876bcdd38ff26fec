"""Image encoding: pixels to the bytes stored in the dataset, in the recipe's format."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from builders.recipe import OutputSettings


def encode_image(pixels: np.ndarray, output: OutputSettings) -> dict:
    """A uint8 (H, W, 3) array as a ``datasets.Image`` value: encoded bytes, no path."""
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if output.image_format == "png":
        image.save(buffer, format="PNG", compress_level=output.png_compress_level)
    elif output.image_format == "webp":
        image.save(buffer, format="WEBP", quality=output.quality, method=4)
    else:
        image.save(buffer, format="JPEG", quality=output.quality)
    return {"bytes": buffer.getvalue(), "path": None}
