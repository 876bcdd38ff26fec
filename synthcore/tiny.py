"""Tiny random models, built from configs and saved locally, so the whole tool runs offline on a CPU.

They have the real architectures (a Stable Diffusion pipeline with UNet, VAE, CLIP text encoder, byte-level
tokenizer and safety checker; a CLIP model with its processor; a torchvision ResNet50) with random weights, and
are loaded back through the same ``from_pretrained``/checkpoint code paths as the real models. A recipe asks
for them with the model reference ``tiny-random``. They are made once, under a file lock (several processes of
one launch may ask at the same moment), and cached in ``$SYNTHDATA_CACHE`` (default ``~/.cache/synthdata``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

TINY_VERSION = "v1"
_TEXT_DIM = 32
_IMAGE_SIZE = 32


def cache_root() -> Path:
    return Path(os.environ.get("SYNTHDATA_CACHE", Path.home() / ".cache" / "synthdata")).expanduser()


def tiny_models_dir() -> Path:
    """Directory holding ``sd/``, ``clip/`` and ``resnet50.pt``, created on first use."""
    return built_once(cache_root() / f"tiny-random-{TINY_VERSION}", _write_tiny_models)


def built_once(root: Path, write: Callable[[Path], None]) -> Path:
    """``root``, filled by ``write`` the first time any process asks (in a staging directory, under a lock)."""
    if (root / "complete").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if not (root / "complete").exists():
            staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=".staging-"))
            write(staging)
            shutil.rmtree(root, ignore_errors=True)
            staging.rename(root)
            (root / "complete").write_text(root.name)
    return root


def _write_tiny_models(directory: Path) -> None:
    import torch

    with torch.random.fork_rng(devices=[]):  # seeded weights, without reseeding the caller's global RNG
        torch.manual_seed(0)
        tokenizer = byte_level_clip_tokenizer(directory / "vocab")
        _tiny_sd_pipeline(tokenizer).save_pretrained(directory / "sd")
        model, processor = _tiny_clip(tokenizer)
        model.save_pretrained(directory / "clip")
        processor.save_pretrained(directory / "clip")
        _save_resnet50(directory / "resnet50.pt")
    shutil.rmtree(directory / "vocab")


def byte_level_clip_tokenizer(vocab_dir: Path):
    """A CLIP tokenizer over single bytes (no merges): any text, Korean included, tokenizes without unknowns."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    tokens = ["<|startoftext|>", "<|endoftext|>", *symbols, *(s + "</w>" for s in symbols)]
    vocab_dir.mkdir(parents=True)
    (vocab_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (vocab_dir / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(vocab_dir, model_max_length=77)


def _text_config(tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=_TEXT_DIM,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=_TEXT_DIM,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _vision_config() -> dict:
    return dict(
        hidden_size=_TEXT_DIM,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=_IMAGE_SIZE,
        patch_size=8,
        projection_dim=_TEXT_DIM,
    )


def _image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": _IMAGE_SIZE}, crop_size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE}
    )


def _tiny_sd_pipeline(tokenizer):
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPTextConfig, CLIPTextModel

    unet = UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(8, 16),
        layers_per_block=1,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=_TEXT_DIM,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=_IMAGE_SIZE,
    )
    # The scheduler config is SD 1.5's own (see shared/sd15_architecture.json).
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config(tokenizer)))
    safety_checker = StableDiffusionSafetyChecker(
        CLIPConfig(text_config=_text_config(tokenizer), vision_config=_vision_config(), projection_dim=_TEXT_DIM)
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=safety_checker,
        feature_extractor=_image_processor(),
    )


def _tiny_clip(tokenizer):
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    config = CLIPConfig(text_config=_text_config(tokenizer), vision_config=_vision_config(), projection_dim=_TEXT_DIM)
    return CLIPModel(config), CLIPProcessor(image_processor=_image_processor(), tokenizer=tokenizer)


def _save_resnet50(path: Path) -> None:
    """The real ResNet50 architecture with random weights, saved as a plain state-dict checkpoint."""
    import torch
    from torchvision.models import resnet50

    torch.save(resnet50(weights=None).state_dict(), path)


# -- other diffusers families -------------------------------------------------------------------------------------
# Tiny random pipelines of the other text-to-image families, shaped as in diffusers' own tests
# (``get_dummy_components``), each built on first use in a directory of its own, so the SD one above never changes.
# Every tokenizer covers any text with byte-level pieces: Korean prompts tokenize without unknowns.
TINY_FAMILIES_VERSION = "v1"
_T5_DIM = 64


def tiny_family_dir(name: str) -> Path:
    """The local directory of the tiny random pipeline ``name`` (one of ``TINY_FAMILIES``), or of the standalone
    safety checker (``safety-checker``: checker weights and its image processor), built on first use."""
    if name not in _FAMILY_WRITERS:
        raise ValueError(f"no tiny random model {name!r}; known: {', '.join(_FAMILY_WRITERS)}")
    return built_once(cache_root() / f"tiny-random-families-{TINY_FAMILIES_VERSION}" / name, _FAMILY_WRITERS[name])


def _with_seed(write: Callable[[Path], None]) -> Callable[[Path], None]:
    def seeded(directory: Path) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):  # seeded weights, without reseeding the caller's global RNG
            torch.manual_seed(0)
            write(directory)

    return seeded


def _clip_tokenizer(directory: Path):
    """The byte-level CLIP tokenizer, its vocabulary files written aside and removed once it is loaded."""
    tokenizer = byte_level_clip_tokenizer(directory / ".vocab")
    shutil.rmtree(directory / ".vocab")
    return tokenizer


def _byte_fallback_unigram(specials: list[str]):
    """A sentencepiece-style Unigram tokenizer (``tokenizers``): specials, ASCII letters and digits, and the 256
    byte pieces every other character falls back to."""
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    letters = string.ascii_letters + string.digits + string.punctuation
    pieces = [(t, 0.0) for t in specials] + [("▁", -2.0)] + [(c, -3.0) for c in letters]
    pieces += [(f"<0x{b:02X}>", -10.0) for b in range(256)]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=specials.index("<unk>"), byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
    return tokenizer


def _t5_tokenizer():
    from tokenizers import processors
    from transformers import T5TokenizerFast

    backend = _byte_fallback_unigram(["<pad>", "</s>", "<unk>"])
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=backend, extra_ids=0, model_max_length=512)


def _t5_encoder(tokenizer):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=_T5_DIM,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5EncoderModel(config)


def _tiny_vae(latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=_IMAGE_SIZE,
        **extra,
    )


def _write_sdxl(directory: Path) -> None:
    """SDXL: a UNet with the micro-conditioning (time ids) embedding, two CLIP text encoders, the second with a
    projection whose pooled output joins the time ids."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = _clip_tokenizer(directory)
    time_dim = 8
    unet = UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(8, 16),
        layers_per_block=1,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * time_dim + _TEXT_DIM,
        cross_attention_dim=2 * _TEXT_DIM,
        norm_num_groups=4,
    )
    # SDXL's own scheduler config (stabilityai/stable-diffusion-xl-base-1.0).
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    config = CLIPTextConfig(**_text_config(tokenizer))
    StableDiffusionXLPipeline(
        vae=_tiny_vae(),
        text_encoder=CLIPTextModel(config),
        text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    ).save_pretrained(directory)


def _write_sd3(directory: Path) -> None:
    """SD3: an MMDiT transformer, two CLIP text encoders with projections and a T5 encoder."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    tokenizer = _clip_tokenizer(directory)
    t5_tokenizer = _t5_tokenizer()
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=1,
        in_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=_T5_DIM,
        pooled_projection_dim=2 * _TEXT_DIM,
        out_channels=4,
    )
    config = CLIPTextConfig(**_text_config(tokenizer))
    StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),  # SD3's own
        vae=_tiny_vae(use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer_2=tokenizer,
        text_encoder_3=_t5_encoder(t5_tokenizer),
        tokenizer_3=t5_tokenizer,
    ).save_pretrained(directory)


def _flux_writer(guidance_embeds: bool) -> Callable[[Path], None]:
    """FLUX.1: a transformer over 2x2-packed latents, a CLIP text encoder (pooled) and a T5 encoder. [dev] has the
    distilled guidance embedding and a resolution-dependent timestep shift; [schnell] has neither."""

    def write(directory: Path) -> None:
        from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
        from transformers import CLIPTextConfig, CLIPTextModel

        tokenizer = _clip_tokenizer(directory)
        t5_tokenizer = _t5_tokenizer()
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=4,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=_T5_DIM,
            pooled_projection_dim=_TEXT_DIM,
            axes_dims_rope=(4, 4, 8),
            guidance_embeds=guidance_embeds,
        )
        scheduler = (
            FlowMatchEulerDiscreteScheduler(
                shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256
            )
            if guidance_embeds
            else FlowMatchEulerDiscreteScheduler(shift=1.0)
        )
        FluxPipeline(
            scheduler=scheduler,
            vae=_tiny_vae(
                1, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611
            ),
            text_encoder=CLIPTextModel(CLIPTextConfig(**_text_config(tokenizer))),
            tokenizer=tokenizer,
            text_encoder_2=_t5_encoder(t5_tokenizer),
            tokenizer_2=t5_tokenizer,
            transformer=transformer,
        ).save_pretrained(directory)

    return write


def _write_pixart_sigma(directory: Path) -> None:
    """PixArt-Σ: a DiT with adaLN-single and cross-attention to a T5 encoder; it predicts noise and variance."""
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    tokenizer = _t5_tokenizer()
    transformer = PixArtTransformer2DModel(
        sample_size=16,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=_T5_DIM,
        in_channels=4,
        cross_attention_dim=24,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=_t5_encoder(tokenizer),
        vae=_tiny_vae(),
        transformer=transformer.eval(),
        scheduler=DPMSolverMultistepScheduler(),
    ).save_pretrained(directory)


def _write_sana(directory: Path) -> None:
    """Sana: a linear-attention DiT on a deep-compression autoencoder (DC-AE), with a Gemma 2 text encoder."""
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model, GemmaTokenizerFast

    backend = _byte_fallback_unigram(["<pad>", "<eos>", "<bos>", "<unk>"])
    tokenizer = GemmaTokenizerFast(tokenizer_object=backend, model_max_length=8192)
    text_dim = 16
    transformer = SanaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        num_attention_heads=2,
        attention_head_dim=4,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=text_dim,
        sample_size=16,
    )
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    text_encoder = Gemma2Model(
        Gemma2Config(
            head_dim=8,
            hidden_size=text_dim,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=1,
            num_key_value_heads=2,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            attn_implementation="eager",
        )
    )
    SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    ).save_pretrained(directory)


def _write_safety_checker(directory: Path) -> None:
    """The standalone safety checker as its Hub repo lays it out: checker weights and the image processor."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    tokenizer = _clip_tokenizer(directory)
    checker = StableDiffusionSafetyChecker(
        CLIPConfig(text_config=_text_config(tokenizer), vision_config=_vision_config(), projection_dim=_TEXT_DIM)
    )
    checker.save_pretrained(directory)
    _image_processor().save_pretrained(directory)


_FAMILY_WRITERS: dict[str, Callable[[Path], None]] = {
    name: _with_seed(write)
    for name, write in {
        "sdxl": _write_sdxl,
        "sd3": _write_sd3,
        "flux-dev": _flux_writer(guidance_embeds=True),
        "flux-schnell": _flux_writer(guidance_embeds=False),
        "pixart-sigma": _write_pixart_sigma,
        "sana": _write_sana,
        "safety-checker": _write_safety_checker,
    }.items()
}
TINY_FAMILIES = tuple(name for name in _FAMILY_WRITERS if name != "safety-checker")


def tiny_language_model_dir() -> Path:
    """The local directory of a tiny random Llama causal language model with its tokenizer (what
    ``prompt_expansion.model: tiny-random`` loads), built on first use."""
    return built_once(cache_root() / f"tiny-random-llama-{TINY_VERSION}", _with_seed(_write_tiny_llama))


def _write_tiny_llama(directory: Path) -> None:
    """Two Llama layers of width 32 over the byte-fallback Unigram vocabulary (any text tokenizes); a chat-free
    tokenizer that starts every text with ``<s>``. Its random weights write random text, which is all a test needs
    of a prompt writer."""
    from tokenizers import processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = _byte_fallback_unigram(["<unk>", "<s>", "</s>"])
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=_TEXT_DIM,
        intermediate_size=2 * _TEXT_DIM,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
