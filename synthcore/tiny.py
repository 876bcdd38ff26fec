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
TEXT_DIM = 32
IMAGE_SIZE = 32


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


def text_config(tokenizer) -> dict:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_DIM,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=TEXT_DIM,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _vision_config() -> dict:
    return dict(
        hidden_size=TEXT_DIM,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=8,
        projection_dim=TEXT_DIM,
    )


def _image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})


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
        cross_attention_dim=TEXT_DIM,
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
        sample_size=IMAGE_SIZE,
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
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config(tokenizer)))
    safety_checker = StableDiffusionSafetyChecker(
        CLIPConfig(text_config=text_config(tokenizer), vision_config=_vision_config(), projection_dim=TEXT_DIM)
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

    config = CLIPConfig(text_config=text_config(tokenizer), vision_config=_vision_config(), projection_dim=TEXT_DIM)
    return CLIPModel(config), CLIPProcessor(image_processor=_image_processor(), tokenizer=tokenizer)


def _save_resnet50(path: Path) -> None:
    """The real ResNet50 architecture with random weights, saved as a plain state-dict checkpoint."""
    import torch
    from torchvision.models import resnet50

    torch.save(resnet50(weights=None).state_dict(), path)


# -- other diffusers families -------------------------------------------------------------------------------------
# The parts the tiny random pipelines of the other text-to-image families share (each family's plug-in writes its
# own, ``Generator.write_tiny``, shaped as in diffusers' own tests), each built on first use in a directory of its
# own, so the SD one above never changes. Every tokenizer covers any text with byte-level pieces: Korean prompts
# tokenize without unknowns.
TINY_FAMILIES_VERSION = "v1"
T5_DIM = 64
# The transformer of the tiny FLUX-like pipelines (FLUX.1, FLUX.2 [klein], and Chroma in the tests), shaped as
# diffusers' own tests of them build it: one double-stream and one single-stream block of two 16-wide heads.
FLUX_LIKE_BLOCKS = dict(
    patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2
)


def tiny_flux2_transformer(text_dim: int, **extra):
    """The FLUX.2 transformer (FLUX.2 [klein]; [dev] in the tests): ``FLUX_LIKE_BLOCKS`` over 2x2-patchified
    latents, reading the text encoder's three stacked hidden layers of width ``text_dim``; as diffusers' tests
    build it."""
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel(
        **FLUX_LIKE_BLOCKS,
        joint_attention_dim=3 * text_dim,
        timestep_guidance_channels=256,
        axes_dims_rope=(4, 4, 4, 4),
        **extra,
    )


def tiny_flux2_vae():
    """A one-channel FLUX.2 VAE of two levels (4 and 8 channels), as diffusers' FLUX.2 tests build it."""
    from diffusers import AutoencoderKLFlux2

    return AutoencoderKLFlux2(
        sample_size=IMAGE_SIZE,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(4, 8),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def tiny_safety_checker_dir() -> Path:
    """The local directory of the tiny random standalone safety checker (checker weights and its image
    processor), built on first use. The families' tiny pipelines: ``builders.generators.tiny``."""
    return built_once(tiny_families_root() / "safety-checker", with_seed(_write_safety_checker))


def tiny_families_root() -> Path:
    """Where the tiny random pipelines of the other families are cached, one directory each."""
    return cache_root() / f"tiny-random-families-{TINY_FAMILIES_VERSION}"


def with_seed(write: Callable[[Path], None]) -> Callable[[Path], None]:
    def seeded(directory: Path) -> None:
        import torch

        with torch.random.fork_rng(devices=[]):  # seeded weights, without reseeding the caller's global RNG
            torch.manual_seed(0)
            write(directory)

    return seeded


def clip_tokenizer(directory: Path):
    """The byte-level CLIP tokenizer, its vocabulary files written aside and removed once it is loaded."""
    tokenizer = byte_level_clip_tokenizer(directory / ".vocab")
    shutil.rmtree(directory / ".vocab")
    return tokenizer


def byte_fallback_unigram(specials: list[str]):
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


def t5_tokenizer():
    from tokenizers import processors
    from transformers import T5TokenizerFast

    backend = byte_fallback_unigram(["<pad>", "</s>", "<unk>"])
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=backend, extra_ids=0, model_max_length=512)


def t5_encoder(tokenizer):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=T5_DIM,
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


def tiny_vae(latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=IMAGE_SIZE,
        **extra,
    )


def _write_safety_checker(directory: Path) -> None:
    """The standalone safety checker as its Hub repo lays it out: checker weights and the image processor."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    tokenizer = clip_tokenizer(directory)
    checker = StableDiffusionSafetyChecker(
        CLIPConfig(text_config=text_config(tokenizer), vision_config=_vision_config(), projection_dim=TEXT_DIM)
    )
    checker.save_pretrained(directory)
    _image_processor().save_pretrained(directory)


def tiny_language_model_dir() -> Path:
    """The local directory of a tiny random Llama causal language model with its tokenizer (what
    ``prompt_expansion.model: tiny-random`` loads), built on first use."""
    return built_once(cache_root() / f"tiny-random-llama-{TINY_VERSION}", with_seed(_write_tiny_llama))


def _write_tiny_llama(directory: Path) -> None:
    """Two Llama layers of width 32 over the byte-fallback Unigram vocabulary (any text tokenizes); a chat-free
    tokenizer that starts every text with ``<s>``. Its random weights write random text, which is all a test needs
    of a prompt writer."""
    from tokenizers import processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = byte_fallback_unigram(["<unk>", "<s>", "</s>"])
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=512
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_DIM,
        intermediate_size=2 * TEXT_DIM,
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


QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen_tokenizer():
    """A Qwen2 tokenizer as the Qwen2/Qwen3 text encoders of the 2026 families read prompts: byte-level BPE (no
    merges, so any text, Korean included, is its bytes), ``<|endoftext|>`` padding and the ChatML template their
    pipelines wrap a prompt in."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {symbol: i for i, symbol in enumerate(bytes_to_unicode().values())}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(specials)
    return Qwen2TokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        chat_template=QWEN_CHAT_TEMPLATE,
        model_max_length=32768,
    )


def qwen3_config(tokenizer, hidden_size: int, num_hidden_layers: int):
    """A Qwen3 text encoder's config at toy width over ``qwen_tokenizer``'s vocabulary (two heads)."""
    from transformers import Qwen3Config

    return Qwen3Config(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=hidden_size // 2,
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
    )


# The tiny Qwen3-VL's chat template: ChatML, a message's content a string (FLUX.3's text encoder step) or a list of
# typed parts whose text parts are joined (Qwen-Image 2.1 counts the system message's tokens that way).
QWEN_VL_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for part in m['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
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
TINY_VL_TEXT_DIM = 16
TINY_VL_TEXT_LAYERS = 32  # FLUX.3 stacks hidden states 4, 8, ..., 32 (text_encoder_out_layers)


def byte_level_bpe(specials: tuple[str, ...]):
    """A byte-level BPE tokenizer (``tokenizers``) of the special tokens (ids 0, 1, ...) and the 256 byte symbols,
    without merges: any text, Korean included, tokenizes as its bytes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {token: i for i, token in enumerate(specials)}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(specials))
    return backend


def tiny_qwen3_vl_processor():
    """A Qwen3-VL processor over a byte-level BPE of the 256 bytes (``byte_level_bpe``; any text tokenizes) with
    Qwen's special tokens and a minimal chat template."""
    from transformers import Qwen2TokenizerFast, Qwen2VLImageProcessor, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=byte_level_bpe(QWEN_SPECIALS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=8192,
    )
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(),
        chat_template=QWEN_VL_CHAT_TEMPLATE,
    )


def tiny_qwen3_vl(tokenizer):
    """Qwen3-VL at width 16 with a one-layer vision tower (FLUX.3 and Qwen-Image 2.1 read only its language hidden
    states)."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    ids = {
        f"{what}_token_id": tokenizer.convert_tokens_to_ids(f"<|{what}|>")
        for what in ("image_pad", "video_pad", "vision_start", "vision_end")
    }
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": TINY_VL_TEXT_DIM,
            "intermediate_size": 2 * TINY_VL_TEXT_DIM,
            "num_hidden_layers": TINY_VL_TEXT_LAYERS,
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
            "out_hidden_size": TINY_VL_TEXT_DIM,
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
