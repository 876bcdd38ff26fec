"""FLUX.2 [klein] (``Flux2KleinPipeline``, Black Forest Labs): a flow-matching transformer of 4B or 9B parameters
over 2x2-patchified latents of the FLUX.2 VAE, reading the prompt with a Qwen3 text encoder (three of its hidden
layers, after a chat template). It takes no negative prompt. The step-distilled models (``is_distilled`` in their
``model_index.json``: [klein] 4B and 9B) run 4 steps without guidance; the base models ([klein] base 4B and 9B)
run classifier-free guidance above 1 (two passes a step, the unconditional one on an empty prompt). Licences differ
by size: the 4B models are Apache-2.0, the 9B ones under the FLUX non-commercial licence. Its pipeline ships no
safety checker.
"""

from __future__ import annotations

from pathlib import Path

from builders.generators.base import FamilyDefaults, FamilyFlops
from builders.generators.generic import SignatureGenerator
from synthcore.tiny import qwen3_config, qwen_tokenizer, tiny_flux2_transformer, tiny_flux2_vae


class Flux2Klein(SignatureGenerator):
    name = "flux2-klein"
    tiny_names = ("flux2-klein",)  # its tiny random pipelines (write_tiny), for tests and benchmarks
    label = "FLUX.2 [klein]"
    pipeline_classes = ("Flux2KleinPipeline",)
    example = "black-forest-labs/FLUX.2-klein-4B"
    card_tags = ("flux2",)
    max_sequence_length = 512
    default_steps, default_guidance, default_sequence_length = 50, 4.0, 512  # the [klein] base cards
    distilled = FamilyDefaults(1024, 1024, 4, 1.0, 512)  # the [klein] 4B/9B cards: 4 steps, guidance 1 (none)
    # GFLOPs counted by benchmarks/families.py on the reference architecture (families_architecture.json).
    flops = FamilyFlops(size=1024, denoiser=34820.2, vae_decode=10474.7, text_encoders=4273.4, reference=example)

    def write_tiny(self, directory: Path, name: str) -> None:
        """FLUX.2 [klein] base: a transformer of one double and one single block over 2x2-patchified latents, a
        Qwen3 encoder deep enough for the pipeline's hidden layers 9, 18 and 27 (27 layers of width 8), a one-channel
        FLUX.2 VAE; as diffusers' tests build it."""
        from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline
        from transformers import Qwen3ForCausalLM

        tokenizer = qwen_tokenizer()
        text_dim = 8
        transformer = tiny_flux2_transformer(text_dim, guidance_embeds=False)
        text_encoder = Qwen3ForCausalLM(qwen3_config(tokenizer, text_dim, 27))
        vae = tiny_flux2_vae()
        Flux2KleinPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
            is_distilled=False,
        ).save_pretrained(directory)
