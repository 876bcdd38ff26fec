"""Images from outside, decoded within a bound: one limit on pixels per image, and datasets checked row by row.

A dataset handed to ``python -m eval`` or ``python -m training`` may hold anything: bytes that are no image, a
0x0 PNG, or a 20 KB PNG whose header declares 13000x13000 pixels (half a gigabyte once decoded). Every image
the tools decode goes through ``decode_image``, which reads the header first and refuses an image of more than
``MAX_IMAGE_PIXELS`` pixels before decoding it. ``check_split`` reads every row's image header (no pixels are
decoded) and label before any work, so a bad dataset fails in seconds with one message naming the split, the rows
and what is wrong, rather than after minutes of scoring or training.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets
from PIL import Image

MAX_IMAGE_PIXELS = 8192 * 8192  # 67,108,864 pixels (64 megapixels: 192 MiB as RGB) per decoded image
OVER_BOUND = f"over the bound of {MAX_IMAGE_PIXELS:,} pixels per image (synthcore.images.MAX_IMAGE_PIXELS)"
SHOWN_PROBLEMS = 5  # rows named in a message; the rest are counted

# Pillow's own guard (a warning above its bound, an error above twice it) yields to ours, which is lower and
# raised as a clear error; decodes that do not pass through here (a dataset library's) still stop at twice ours.
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


class ImageError(ValueError):
    """One image that cannot be used, and why."""


class DatasetRowsError(ValueError):
    """Rows of a dataset that cannot be used: the dataset, the split, the rows and what is wrong with each."""


def open_image(encoded: bytes | None, path: str | None = None) -> Image.Image:
    """The image's header read (its pixels are not decoded yet), checked: an image, not empty, within the bound."""
    try:
        image = Image.open(io.BytesIO(encoded) if encoded is not None else _local_file(path))
    except Image.DecompressionBombError:  # Pillow's guard, at twice our bound
        raise ImageError(f"an image of more than {2 * MAX_IMAGE_PIXELS:,} pixels, {OVER_BOUND}") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise ImageError(f"not an image Pillow can read ({err or type(err).__name__})") from None
    width, height = image.size
    if width * height == 0:
        raise ImageError(f"an empty image ({width}x{height} pixels)")
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"an image of {width}x{height} = {width * height:,} pixels, {OVER_BOUND}")
    return image


def _local_file(path: str | None) -> str:
    if not path or not Path(path).is_file():
        raise ImageError(f"neither image bytes nor a readable image file ({path!r})")
    return path


def decode_image(value: dict | bytes) -> Image.Image:
    """An encoded image (bytes, or a datasets ``{"bytes", "path"}`` value) decoded, once its header is checked."""
    encoded, path = (value, None) if isinstance(value, bytes) else (value.get("bytes"), value.get("path"))
    image = open_image(encoded, path)
    try:
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise ImageError(f"an image that does not decode ({err or type(err).__name__})") from None
    return image


@dataclass(frozen=True)
class SplitColumns:
    """What ``check_split`` reads: the image column, the label column and the number of classes; ``unlabelled``:
    rows without a label (-1 or null) are allowed (the caller leaves them out)."""

    image: str
    label: str
    classes: int
    unlabelled: bool = False


def check_split(dataset: datasets.Dataset, split: str, columns: SplitColumns, source: str) -> None:
    """Every row's image header and label checked: a ``DatasetRowsError`` names the first rows that fail and
    counts them all."""
    problems = list(_row_problems(dataset, columns))
    if problems:
        shown = "; ".join(f"row {row}: {what}" for row, what in problems[:SHOWN_PROBLEMS])
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        raise DatasetRowsError(
            f"{source}: split {split!r}: {len(problems)} of {len(dataset)} rows cannot be used: {shown}{more}"
        )


def _row_problems(dataset: datasets.Dataset, columns: SplitColumns) -> Iterator[tuple[int, str]]:
    table = dataset.select_columns([columns.image, columns.label]).with_format("arrow")
    row = 0
    for batch in table.iter(batch_size=256):
        images = batch[columns.image].to_pylist()
        for offset, (image, label) in enumerate(zip(images, batch[columns.label].to_pylist())):
            if (what := _row_problem(image, label, columns)) is not None:
                yield row + offset, what
        row += batch.num_rows


def _row_problem(image: dict | None, label: int | None, columns: SplitColumns) -> str | None:
    if columns.unlabelled and label in (None, -1):
        return None
    if label is None or not 0 <= label < columns.classes:
        return f"label {label} is not a class index (0 to {columns.classes - 1})"
    if image is None:
        return "no image"
    try:
        open_image(image.get("bytes"), image.get("path")).close()
    except ImageError as err:
        return str(err)
    return None
