"""Exact duplicates are pixel duplicates: the hash is over the decoded RGBA pixels, whatever the mode or encoding."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from eval.quality import pixel_hash


def encoded(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def palette_image(indices: np.ndarray, colours: list[tuple[int, int, int]]) -> Image.Image:
    image = Image.fromarray(indices, "P")
    image.putpalette([channel for colour in colours for channel in colour])
    return image


INDICES = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [1, 1, 2, 2]], dtype=np.uint8)
WARM = [(255, 0, 0), (255, 128, 0), (255, 255, 0), (128, 0, 0)]
COLD = [(0, 0, 255), (0, 128, 255), (0, 255, 255), (0, 0, 128)]


def test_a_picture_stored_as_rgb_and_as_an_exact_palette_image_hashes_alike():
    palette = palette_image(INDICES, WARM)
    rgb = palette.convert("RGB")
    assert pixel_hash(encoded(palette)) == pixel_hash(encoded(rgb)) == pixel_hash(encoded(rgb.convert("RGBA")))
    assert pixel_hash(encoded(rgb)) == pixel_hash(encoded(rgb, "WEBP", lossless=True))


def test_palette_images_with_the_same_indices_and_different_colours_differ():
    assert pixel_hash(encoded(palette_image(INDICES, WARM))) != pixel_hash(encoded(palette_image(INDICES, COLD)))


def test_transparency_and_size_count():
    rgb = palette_image(INDICES, WARM).convert("RGB")
    see_through = rgb.convert("RGBA")
    see_through.putalpha(128)
    assert pixel_hash(encoded(see_through)) != pixel_hash(encoded(rgb))
    flat = Image.fromarray(np.zeros((2, 6, 3), dtype=np.uint8))
    tall = Image.fromarray(np.zeros((6, 2, 3), dtype=np.uint8))
    assert pixel_hash(encoded(flat)) != pixel_hash(encoded(tall))
