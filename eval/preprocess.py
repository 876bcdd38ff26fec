"""Image preprocessing for the scorers, in torch on whatever device the images are already on.

Both scorers resize, center-crop and normalize with their model's own values (the CLIP processor's, the
torchvision weights' transforms). Doing it here with torchvision's tensor functions instead of through PIL keeps
a batch of generated images on the GPU from the VAE decoder to the scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # torchvision loads when an image is first resized: a recipe check or a refusal never pays for it
    from torchvision.transforms.v2 import InterpolationMode

Images = torch.Tensor | Sequence[torch.Tensor]


def rgb_tensor(image, device: str | torch.device) -> torch.Tensor:
    """A PIL image of any mode as a uint8 RGB (3, H, W) tensor on the device.

    Transparency is composited onto white, as transformers' image processors do (``convert_to_rgb``), so a
    transparent image scores as CLIPProcessor sees it; other modes convert with PIL.
    """
    from transformers.image_transforms import convert_to_rgb

    return torch.from_numpy(convert_to_rgb(image, return_numpy=True)).permute(2, 0, 1).to(device)


def stored_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] as they will read back from the dataset: rounded to 8 bits, as the writer rounds.

    Scoring the rounded pixels makes a score computed during the build equal the score of the stored image, so
    rescoring a dataset (``python -m eval``, the evaluate module) reproduces its columns. uint8 input is kept.
    """
    if images.dtype == torch.uint8:
        return images
    return (images.float() * 255).round().clamp(0, 255).to(torch.uint8)


def as_stored(images: torch.Tensor) -> torch.Tensor:
    """``stored_uint8`` as floats in [0, 1]."""
    return stored_uint8(images).float() / 255


@dataclass(frozen=True)
class Preprocess:
    """Resize (``resize`` is ``(shortest_edge,)`` or ``(height, width)``), center-crop, normalize."""

    resize: tuple[int, ...]
    crop: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: InterpolationMode

    def __call__(self, images: Images, dtype: torch.dtype) -> torch.Tensor:
        """A (B, 3, crop_h, crop_w) tensor in ``dtype`` from a batch tensor or a list of (3, H, W) tensors.

        Images of different sizes (standalone scoring of real datasets) are resized one by one, then stacked.
        """
        if isinstance(images, torch.Tensor):
            return self._one_size(images).to(dtype)
        if len({tuple(image.shape) for image in images}) == 1:
            return self._one_size(torch.stack(list(images))).to(dtype)
        return torch.cat([self._one_size(image[None]) for image in images]).to(dtype)

    def _one_size(self, images: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as tvF

        images = tvF.resize(as_stored(images), list(self.resize), interpolation=self.interpolation, antialias=True)
        images = tvF.center_crop(images, list(self.crop))
        return tvF.normalize(images, list(self.mean), list(self.std))
