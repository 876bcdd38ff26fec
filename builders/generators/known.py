"""Well-known models, known without the Hub: what their small JSON files say that the generator plug-ins read.

A dry run is what a user runs before downloading 4 to 35 GB of weights, often offline: for the models the shipped
recipes and the docs name, the family (the pipeline class of ``model_index.json``), whether the pipeline ships its
own safety checker, and the config keys the plug-ins read (the denoiser's ``sample_size``; FLUX.1's
``guidance_embeds``; FLUX.2 [klein]'s and Krea 2's ``is_distilled``; Qwen-Image 2.1 Turbo's
``sample_sigmas``) are in this table, so ``ModelFiles`` answers
from it when the Hub cannot be reached and the files are not in the local cache. Anything else offline and not
cached stays the error it was. ``tests/test_known_models.py`` keeps the table in step with the registry: every
family has a known model, every entry's pipeline class runs (a registered family's, or through the generic plug-in:
FLUX.2 [dev]'s ``Flux2Pipeline``).

``gigabytes``: about what the build downloads of the model (``model_index.json``, the components' configs,
tokenizers and their non-variant safetensors weights, the files ``synthcore.availability.DIFFUSERS_FILES`` names),
from the file sizes on the models' Hub pages; None where not checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

INDEX = "model_index.json"
MODULAR_INDEX = "modular_model_index.json"  # a modular pipeline's index, read where it has no model_index.json


@dataclass(frozen=True)
class KnownModel:
    pipeline: str  # model_index.json's _class_name
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # component -> config keys read
    safety_checker: bool = False  # ships Stable Diffusion's safety checker (SD 1.x)
    gigabytes: float | None = None
    index: Mapping[str, Any] = field(default_factory=dict)  # pipeline config keys read (FLUX.2's is_distilled)

    def file(self, filename: str) -> dict[str, Any] | None:
        """The part of the model's small JSON file that the plug-ins read; None for any other file."""
        if filename == INDEX:
            checker = ["stable_diffusion", "StableDiffusionSafetyChecker"] if self.safety_checker else [None, None]
            return {"_class_name": self.pipeline, "safety_checker": checker, **self.index}
        component, _, name = filename.partition("/")
        return dict(self.configs[component]) if name == "config.json" and component in self.configs else None


def _sd(sample_size: int, safety_checker: bool, gigabytes: float | None) -> KnownModel:
    return KnownModel("StableDiffusionPipeline", {"unet": {"sample_size": sample_size}}, safety_checker, gigabytes)


def _sdxl(sample_size: int) -> KnownModel:
    return KnownModel("StableDiffusionXLPipeline", {"unet": {"sample_size": sample_size}}, gigabytes=13.9)


def _sd3(gigabytes: float) -> KnownModel:
    return KnownModel("StableDiffusion3Pipeline", {"transformer": {"sample_size": 128}}, gigabytes=gigabytes)


def _flux(guidance_embeds: bool) -> KnownModel:
    return KnownModel("FluxPipeline", {"transformer": {"guidance_embeds": guidance_embeds}}, gigabytes=33.7)


KNOWN_MODELS: dict[str, KnownModel] = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": _sd(64, True, 5.5),
    "CompVis/stable-diffusion-v1-4": _sd(64, True, 5.5),
    "stabilityai/stable-diffusion-2-1": _sd(96, False, 5.2),
    "stabilityai/stable-diffusion-2-1-base": _sd(64, False, 5.2),
    "stabilityai/stable-diffusion-xl-base-1.0": _sdxl(128),
    "stabilityai/sdxl-turbo": _sdxl(64),
    "stabilityai/stable-diffusion-3-medium-diffusers": _sd3(15.5),
    "stabilityai/stable-diffusion-3.5-medium": _sd3(16.0),
    "stabilityai/stable-diffusion-3.5-large": _sd3(27.7),
    "stabilityai/stable-diffusion-3.5-large-turbo": _sd3(27.7),
    "black-forest-labs/FLUX.1-schnell": _flux(False),
    "black-forest-labs/FLUX.1-dev": _flux(True),
    "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS": KnownModel("PixArtSigmaPipeline", {"transformer": {"sample_size": 128}}),
    "PixArt-alpha/PixArt-Sigma-XL-2-512-MS": KnownModel("PixArtSigmaPipeline", {"transformer": {"sample_size": 64}}),
    "Efficient-Large-Model/Sana_1600M_1024px_diffusers": KnownModel(
        "SanaPipeline", {"transformer": {"sample_size": 32}}
    ),
    "Efficient-Large-Model/Sana_600M_1024px_diffusers": KnownModel(
        "SanaPipeline", {"transformer": {"sample_size": 32}}
    ),
    "Tongyi-MAI/Z-Image-Turbo": KnownModel("ZImagePipeline"),
    "Tongyi-MAI/Z-Image": KnownModel("ZImagePipeline"),
    **{
        f"black-forest-labs/FLUX.2-klein-{base}{size}": KnownModel(
            "Flux2KleinPipeline", index={"is_distilled": not base}
        )
        for size in ("4B", "9B")
        for base in ("", "base-")
    },
    # FLUX.2 [dev]: no family, the generic plug-in; guidance-distilled (an embedding, as FLUX.1 [dev])
    "black-forest-labs/FLUX.2-dev": KnownModel("Flux2Pipeline", {"transformer": {"guidance_embeds": True}}),
    "CalamitousFelicitousness/Krea-2-Turbo-Diffusers": KnownModel("Krea2Pipeline", index={"is_distilled": True}),
    "CalamitousFelicitousness/Krea-2-Base-Diffusers": KnownModel("Krea2Pipeline", index={"is_distilled": False}),
    "Qwen/Qwen-Image-2.1": KnownModel("QwenImage21Pipeline"),
    # Turbo fixes its sampling schedule: the count of its sample_sigmas is its number of steps
    "Qwen/Qwen-Image-2.1-Turbo": KnownModel(
        "QwenImage21Pipeline",
        index={"sample_sigmas": [1.0, 0.978453, 0.95418, 0.926626, 0.89508, 0.845148, 0.704534, 0.414568]},
    ),
    # modular pipelines: their modular_model_index.json's _class_name (the blocks are that class's default ones)
    "black-forest-labs/flux-3-image-klein": KnownModel("Flux3DistilledModularPipeline"),
    "black-forest-labs/flux-3-image-klein-base": KnownModel("Flux3ModularPipeline"),
}
