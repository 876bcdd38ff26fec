"""FLUX.3 image klein (``Flux3ModularPipeline``, ``Flux3DistilledModularPipeline``), shipped by diffusers only as a
modular pipeline: a 5.6B flow-matching transformer over 2x2-packed FLUX.2-VAE latents, prompted by stacked hidden
states of Qwen3-VL-4B (one prompt per call, its window padded to a multiple of 80 tokens). The distilled checkpoint
(black-forest-labs/flux-3-image-klein) samples in 16 steps without guidance; the base checkpoint
(black-forest-labs/flux-3-image-klein-base) in 50 steps with classifier-free guidance 4 and a negative prompt.
Which one a model is, its blocks say (the distilled blocks have no guider). Its prompt upsampler (a Qwen3.5-9B
fine-tune that rewrites one prompt per call into a long caption) is taken out: the recipe's prompts are encoded as
written. It ships no safety checker.
"""

from __future__ import annotations

from pathlib import Path

from builders.generators.base import FamilyDefaults, FamilyFlops
from builders.generators.modular import ModularGenerator
from builders.generators.sources import ModelFiles
from synthcore.tiny import TINY_VL_TEXT_DIM, tiny_qwen3_vl, tiny_qwen3_vl_processor


class Flux3(ModularGenerator):
    name = "flux3"
    tiny_names = ("flux3", "flux3-distilled")
    label = "FLUX.3 image klein"
    pipeline_classes = ("Flux3ModularPipeline", "Flux3DistilledModularPipeline")
    example = "black-forest-labs/flux-3-image-klein"
    card_tags = ("flux", "flux-3")
    size_factor = 16  # VAE 8 x 2x2 packing
    flow_matching = True
    gpu_dtype = "bfloat16"
    max_sequence_length = 8192  # the text encoder step's own limit (prompts are padded to a multiple of 80)
    dropped_steps = ("prompt_upsampler",)
    default_size = 1024
    default_steps = 16
    default_guidance = 0.0
    # GFLOPs counted by benchmarks/families.py on the reference architecture (families_architecture.json).
    flops = FamilyFlops(
        size=1024,
        denoiser=41488.9,
        vae_decode=10474.7,
        text_encoders=585.1,
        reference="black-forest-labs/flux-3-image-klein",
    )

    def defaults(self, files: ModelFiles) -> FamilyDefaults:
        """Distilled: 16 steps, no guidance; base: 50 steps at classifier-free guidance 4 (BFL's model overview)."""
        if self.guided(files):
            return FamilyDefaults(1024, 1024, 50, 4.0)
        return FamilyDefaults(1024, 1024, 16, 0.0)

    def write_tiny(self, directory: Path, name: str) -> None:
        """The FLUX.3 blocks (without the prompt upsampler) with a one-layer transformer, a two-level FLUX.2 VAE and
        a Qwen3-VL of width 16 (32 layers: the pipeline stacks hidden states 4 to 32), saved as a modular repo."""
        from diffusers import AutoencoderKLFlux2, Flux3Transformer2DModel
        from diffusers.modular_pipelines import Flux3AutoBlocks, Flux3DistilledAutoBlocks

        distilled = name == "flux3-distilled"
        processor = tiny_qwen3_vl_processor()
        transformer = Flux3Transformer2DModel(
            in_channels=16,
            cond_in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=8 * TINY_VL_TEXT_DIM,
            timestep_channels=16,
            axes_dims_rope=(2, 2, 2, 2),
            flow_map=distilled,
        )
        vae = AutoencoderKLFlux2(
            block_out_channels=(8, 16),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            norm_num_groups=4,
            layers_per_block=1,
            sample_size=32,
        )
        blocks = Flux3DistilledAutoBlocks() if distilled else Flux3AutoBlocks()
        for step in self.dropped_steps:
            blocks.sub_blocks.pop(step)
        pipe = blocks.init_pipeline()
        pipe.update_components(
            transformer=transformer, vae=vae, text_encoder=tiny_qwen3_vl(processor.tokenizer), tokenizer=processor
        )
        pipe.save_pretrained(str(directory), overwrite_modular_index=True)
