"""Helpers shared by the test modules: run a build as a user does, write a recipe, read what a build wrote.

Test modules import from here (and from ``tests.handmade`` / ``tests.hubserver``), never from one another;
``tests/test_layers.py`` checks it. The test environment itself is set once, at the top of ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]

SAME_THREADS = {"OMP_NUM_THREADS": "1"}  # identical thread settings for every process count
ACCELERATE = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]

SCALE_RECIPE = """
name: scale
model: {id: tiny-random, safety_checker: false}
generation: {num_inference_steps: 2, height: 32, width: 32, batch_size: 2, images_per_prompt: 1}
templates: ["a {style} of a {subject}"]
variables: {style: [watercolor, sketch, photo]}
classes:
  fox: {variables: {subject: [red fox]}}
  dog: {variables: {subject: [golden retriever]}}
splits: {train: COUNT, test: 2}
output: {shard_size: 2}
scoring: {clip: {enabled: false}, resnet50: {enabled: false}}
"""

SCORE_FEATURES = {  # the score columns of the smoke recipe (classes fox, dog, 여우) and their types
    "clip_probs": "List(Value('float32'))",
    "clip_pred": "ClassLabel(names=['fox', 'dog', '여우'])",
    "clip_true_prob": "Value('float32')",
    "clip_score": "Value('float32')",
    "clip_embedding": "List(Value('float32'))",
    "resnet50_top5_ids": "List(Value('int32'))",
    "resnet50_top5_labels": "List(Value('string'))",
    "resnet50_top5_probs": "List(Value('float32'))",
    "resnet50_match": "Value('bool')",
}


def run_build(
    *args: str, env: dict | None = None, check: bool = True, launcher: list[str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``build.py`` the way a user does, in a fresh process."""
    command = [*(launcher or [sys.executable]), str(ROOT / "build.py"), *args]
    result = subprocess.run(
        command, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def build_here(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``build.py`` run in this process, answered as ``run_build`` answers: for a build whose process is not what
    the test checks (a fixture's dataset, a rerun, a reference to compare with). A new process costs its imports
    and its first model load (about 25 s of a busy 2-core machine); here, after the first, a tiny build takes 3 s.

    ``env`` is set for the build's duration; an ``OMP_NUM_THREADS`` in it also sets torch's thread count (which
    the process read once, at import), so the images equal those of a ``run_build`` given the same ``env``."""
    from builders.cli import main

    with environment(env or {}):
        result = run_main(main, *args)
    if check and result.returncode != 0:
        raise AssertionError(
            f"build.py {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` in ``os.environ`` (and ``OMP_NUM_THREADS`` in torch) until the block ends; then as before."""
    import torch

    saved, threads = {name: os.environ.get(name) for name in env}, torch.get_num_threads()
    os.environ.update(env)
    if "OMP_NUM_THREADS" in env:
        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        torch.set_num_threads(threads)


def run_main(main: Callable[[list[str]], int], *args: str) -> subprocess.CompletedProcess:
    """A command line's ``main(argv)`` run in this process, answered as ``run_build`` answers: for the refusals
    that end before any model loads, which need no process of their own (a new one costs seconds of imports).

    The command's log handler writes to the captured stderr; it, and the hooks the command installs, are taken out
    again afterwards, so the next call starts as a new process would."""
    root, hooks = logging.getLogger(), (sys.excepthook, threading.excepthook)
    before = list(root.handlers)
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        for handler in before:  # a handler a command left on the root logger points at an older stderr
            if type(handler).__name__ == "ConsoleHandler":
                root.removeHandler(handler)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(list(args))
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
        sys.excepthook, threading.excepthook = hooks
        logging.captureWarnings(False)
    return subprocess.CompletedProcess(list(args), code, stdout.getvalue(), stderr.getvalue())


def write_recipe(directory: Path, text: str, name: str = "recipe.yaml") -> Path:
    """``text`` written as ``directory/name``; returns the path."""
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def table(path: Path) -> dict[str, list]:
    """Every exported file's rows (id, label, prompt, seed, image bytes), in file order."""
    rows: dict[str, list] = {}
    for file in sorted((path / "data").glob("*.parquet")):
        t = pq.read_table(file, columns=["id", "label", "prompt", "seed", "image"]).to_pydict()
        t["image"] = [image["bytes"] for image in t["image"]]
        for key, values in t.items():
            rows.setdefault(key, []).extend(values)
    return rows


def run_report(out: Path) -> dict:
    """The build's report of its last run (images found done and made, processes, shards per process)."""
    return json.loads((out / ".synthdata" / "run.json").read_text())


def benchmark_headline(script: str, *args: str) -> float:
    """Run ``benchmarks/<script>`` and return the figure at the end of its last line, ``headline: ... <figure>``."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith("headline:"), result.stdout
    return float(last_line.split()[-1])


@contextmanager
def s3_server(key: str = "testing") -> Iterator[tuple[dict[str, str], object]]:
    """A running server, with the environment for its clients and an s3fs client; stopped on exit."""
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    fs = s3fs.S3FileSystem(
        key=key, secret=key, endpoint_url=env["AWS_ENDPOINT_URL"], skip_instance_cache=True, use_listings_cache=False
    )
    try:
        yield env, fs
    finally:
        server.stop()


def write_tiny_chroma(directory: Path) -> Path:
    """A tiny random ``ChromaPipeline`` (a pipeline class of no registered family: the generic plug-in runs it)
    saved in ``directory``, shaped as diffusers' own test builds it (``get_dummy_components``: a FLUX-like
    transformer of one double and one single block, a T5 encoder, a one-channel VAE), with the tokenizer and the
    T5 and VAE configs of the tiny FLUX.1 pipeline (``synthcore.tiny``), since nothing can be downloaded."""
    from synthcore.tiny import with_seed

    with_seed(_save_tiny_chroma)(directory)
    return directory


def _save_tiny_chroma(directory: Path) -> None:
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    from synthcore.tiny import FLUX_LIKE_BLOCKS, T5_DIM, t5_encoder, t5_tokenizer, tiny_vae

    tokenizer = t5_tokenizer()
    transformer = ChromaTransformer2DModel(
        **FLUX_LIKE_BLOCKS,
        joint_attention_dim=T5_DIM,
        axes_dims_rope=(4, 4, 8),
        approximator_hidden_dim=32,
        approximator_layers=1,
        approximator_num_channels=16,
    )
    vae = tiny_vae(1, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    ChromaPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=t5_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=transformer,
        image_encoder=None,
        feature_extractor=None,
    ).save_pretrained(directory)


# The tiny FLUX.2 [dev] text encoder's tokens: Mistral's specials (its instruction and system-prompt markers, Pixtral's
# image tokens) before the 256 bytes, and a chat template that wraps a message's text parts in them, as FLUX.2 [dev]
# sends each prompt: a system message and a user message, their content a list of typed parts.
MISTRAL_SPECIALS = (
    "<unk>",
    "<s>",
    "</s>",
    "<pad>",
    "[INST]",
    "[/INST]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[IMG]",
    "[IMG_BREAK]",
    "[IMG_END]",
)
MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% set text = m['content'] if m['content'] is string else "
    "m['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') %}"
    "{% if m['role'] == 'system' %}[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]"
    "{% elif m['role'] == 'user' %}[INST]{{ text }}[/INST]"
    "{% else %}{{ text }}{{ eos_token }}{% endif %}{% endfor %}"
)


def write_tiny_flux2_dev(directory: Path) -> Path:
    """A tiny random ``Flux2Pipeline`` (FLUX.2 [dev]: a pipeline class of no registered family, which the generic
    plug-in runs) saved in ``directory``, shaped as diffusers' own test builds it (``get_dummy_components``) with
    the transformer and VAE of the tiny FLUX.2 [klein] (``synthcore.tiny``; guidance embedded, as [dev] is
    guidance-distilled), a Mistral3 encoder of width 8 deep enough for the hidden layers 10, 20 and 30 the pipeline
    reads by default, and a Pixtral processor over a byte-level BPE made with ``tokenizers``, since nothing can be
    downloaded (diffusers' test downloads Mistral-Small-3.1's processor)."""
    from synthcore.tiny import with_seed

    with_seed(_save_tiny_flux2_dev)(directory)
    return directory


def _save_tiny_flux2_dev(directory: Path) -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline

    from synthcore.tiny import tiny_flux2_transformer, tiny_flux2_vae

    processor, text_dim = _tiny_pixtral_processor(), 8
    Flux2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny_flux2_vae(),
        text_encoder=_tiny_mistral3(processor.tokenizer, text_dim, num_hidden_layers=30),
        tokenizer=processor,
        transformer=tiny_flux2_transformer(text_dim, guidance_embeds=True),
    ).save_pretrained(directory)


def _tiny_pixtral_processor():
    """Mistral3's processor (Pixtral's) over a byte-level BPE of ``MISTRAL_SPECIALS`` and the 256 bytes: any text,
    Korean included, tokenizes; ``<pad>`` pads to the pipeline's ``max_sequence_length``."""
    from transformers import PixtralProcessor, PreTrainedTokenizerFast
    from transformers.models.pixtral.image_processing_pixtral import PixtralImageProcessor

    from synthcore.tiny import byte_level_bpe

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=byte_level_bpe(MISTRAL_SPECIALS),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=1024,
    )
    image_processor = PixtralImageProcessor(patch_size=6, size={"longest_edge": 30})
    return PixtralProcessor(image_processor, tokenizer, patch_size=6, chat_template=MISTRAL_CHAT_TEMPLATE)


def _tiny_mistral3(tokenizer, hidden_size: int, num_hidden_layers: int):
    """Mistral3 (Mistral language model and Pixtral vision tower) at toy width, as diffusers' FLUX.2 test
    configures it, over ``tokenizer``'s vocabulary."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    ids = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("bos", "eos", "pad")}
    config = Mistral3Config(
        text_config={
            "model_type": "mistral",
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": hidden_size // 2,
            "max_position_embeddings": 1024,
            "sliding_window": None,
            **ids,
        },
        vision_config={
            "model_type": "pixtral",
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "intermediate_size": 37,
            "image_size": 30,
            "patch_size": 6,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        **ids,
    )
    return Mistral3ForConditionalGeneration(config)


# A dataset of 12 images from a tiny random pipeline ``model`` (32 px, 2 steps, batches and shards of 2), scored by the
# tiny CLIP: the family tests' recipe, and the generic plug-in's.
FAMILY_RECIPE = """
name: family-{family}
model: {{id: {model}, safety_checker: false}}
generation: {{num_inference_steps: 2, height: 32, width: 32, batch_size: 2, images_per_prompt: 1}}
{negative}
classes:
  fox: {{prompts: [a red fox, 수채화 여우]}}
  dog: {{prompts: [a dog]}}
splits: {{train: 4, test: 2}}
output: {{shard_size: 2}}
scoring: {{clip: {{model: tiny-random}}, resnet50: {{enabled: false}}}}
"""
