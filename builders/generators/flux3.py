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

# The tiny Qwen3-VL's chat template: what FLUX.3's text encoder step applies to each prompt.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
TINY_TEXT_DIM = 16
TINY_TEXT_LAYERS = 32  # the pipeline stacks hidden states 4, 8, ..., 32 (text_encoder_out_layers)


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
            joint_attention_dim=8 * TINY_TEXT_DIM,
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


def tiny_qwen3_vl_processor():
    """A Qwen3-VL processor over a byte-level BPE of the 256 bytes (``tokenizers``; any text tokenizes) with
    Qwen's special tokens and a minimal chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast, Qwen2VLImageProcessor, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    vocab = {token: i for i, token in enumerate(QWEN_SPECIALS)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(QWEN_SPECIALS))
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=8192
    )
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def tiny_qwen3_vl(tokenizer):
    """Qwen3-VL at width 16 with a one-layer vision tower (FLUX.3 reads only its language hidden states)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    ids = {
        f"{what}_token_id": tokenizer.convert_tokens_to_ids(f"<|{what}|>")
        for what in ("image_pad", "video_pad", "vision_start", "vision_end")
    }
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": TINY_TEXT_DIM,
            "intermediate_size": 2 * TINY_TEXT_DIM,
            "num_hidden_layers": TINY_TEXT_LAYERS,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "max_position_embeddings": 8192,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": TINY_TEXT_DIM,
            "patch_size": 8,
            "num_position_embeddings": 16,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=ids["image_pad_token_id"],
        video_token_id=ids["video_pad_token_id"],
        vision_start_token_id=ids["vision_start_token_id"],
        vision_end_token_id=ids["vision_end_token_id"],
    )
    return Qwen3VLForConditionalGeneration(config)
