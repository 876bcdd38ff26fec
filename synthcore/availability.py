"""Is every model a run needs at hand? Answered before any work starts, so a missing model is one message.

Each command line lists the models it will load (the generator, the scorers, the probe's backbone) as
``ModelNeed`` values, each naming the recipe key or option that chose it, and calls ``require_models`` before it
loads, generates or writes anything. What is checked, without loading any weights:

- a Hub id (``HubModel``): its files are complete in the local Hugging Face cache; or, when downloads are allowed,
  the Hub answers for it (one request, no retries). With ``HF_HUB_OFFLINE=1``, "not cached" is final.
- a local directory (``HubModel`` too): it holds what it claims (``model_index.json`` and the components of a
  diffusers pipeline, ``config.json`` and weights of a transformers model); ``/etc`` is not a pipeline.
- a torchvision weights name (``TorchvisionWeights``): its file is in torch.hub's cache
  (``torch.hub.get_dir()/checkpoints``); or, when downloads are allowed, its URL answers.
- a checkpoint file (``CheckpointFile``): it is a state dict (a PyTorch zip or pickle file read with
  ``weights_only=True``, or safetensors) with the tensors its architecture expects.
- a LoRA adapter (``LoraWeights``): the weights file ``load_lora_weights`` will read is there (local, or in the
  Hugging Face cache, or served by the Hub) and holds LoRA tensors.
- a pipeline's image size (``DecoderMemory``): a lower bound of its VAE decoder's memory at batch 1 fits the
  device.

``HF_HUB_OFFLINE=1`` means no download of any model: torchvision's weights are not fetched either (torchvision
ignores the variable; we do not). Every problem found is reported together, naming the model, the key, and what
to do; the commands then exit with ``MODEL_UNAVAILABLE``. ``tiny-random`` is always available (built locally).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from synthcore.hub import scrub
from synthcore.model_refs import TINY_RANDOM, is_local_path, resolve

MODEL_UNAVAILABLE = 4
PROBE_TIMEOUT_S = 10.0
TRANSFORMERS_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
SAFETY_CHECKER = "safety_checker"

# A checkpoint's tensors by name, as shapes; a need's ``expected`` compares them with its architecture's.
Shapes = Mapping[str, tuple[int, ...]]


class ModelUnavailable(RuntimeError):
    """One or more models a run needs cannot be used; the message says which, why, and what to do."""


def offline() -> bool:
    """Whether downloads are forbidden (``HF_HUB_OFFLINE``, as huggingface_hub itself reads it)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


class ModelNeed(ABC):
    """One model a run will load, and the recipe key or command-line option that chose it."""

    key: str
    ref: str
    what: str

    @abstractmethod
    def problem(self) -> str | None:
        """Why the model cannot be used (with what to do), or None when it can."""

    def title(self) -> str:
        return f"{self.key}: the {self.what} {self.ref!r}"


@dataclass(frozen=True)
class HubModel(ModelNeed):
    """A model ``from_pretrained`` loads: a Hub id (``revision`` optional) or a local directory.

    ``files``: what the directory must hold, each entry a tuple of alternatives (one of them is enough).
    ``index``: for a diffusers pipeline, its ``model_index.json``; every component it lists must be there too,
    except those in ``skip``; those in ``require`` must be listed (with the recipe key that asked for them).
    """

    key: str
    ref: str
    what: str
    files: tuple[tuple[str, ...], ...]
    revision: str | None = None
    index: str | None = None
    skip: tuple[str, ...] = ()
    require: tuple[tuple[str, str], ...] = ()
    include: tuple[str, ...] = ()  # ``hf download --include`` patterns of the files it loads; () the whole repo
    exclude: tuple[str, ...] = ()  # and ``--exclude`` patterns of what those match but it never loads

    def problem(self) -> str | None:
        if self.ref == TINY_RANDOM:
            return None
        if is_local_path(self.ref):
            directory = Path(resolve(self.ref, ""))
            if not directory.is_dir():
                return f"{self.title()} is not a directory"
            reason = self._unusable(directory) or self._incomplete(directory)
            return f"{self.title()} {reason}{self._local_hint()}" if reason else None
        snapshot = self._cached_snapshot()
        if snapshot and (reason := self._unusable(snapshot)):
            return f"{self.title()} {reason}"
        missing = self._incomplete(snapshot) if snapshot else "is not in the local Hugging Face cache"
        if not missing:
            return None
        if offline():
            where = "in the local Hugging Face cache " if snapshot else ""
            return f"{self.title()} {where}{missing}, and HF_HUB_OFFLINE=1 forbids downloading it. {self._advice()}"
        return self._probe_hub()

    def _incomplete(self, directory: Path) -> str | None:
        """What the directory lacks of the model's files and components, or None."""
        missing = [
            " or ".join(options) for options in self.files if not any((directory / f).is_file() for f in options)
        ]
        if missing:
            return f"has no {', no '.join(missing)}"
        absent = [
            name for name in self._components(directory) if name not in self.skip and not _has_files(directory / name)
        ]
        return f"is incomplete: no {', '.join(absent)}" if absent else None

    def _unusable(self, directory: Path) -> str | None:
        """A pipeline whose index is unreadable, or lacks a component the run asks for (final, cached or not)."""
        if self.index is None or not (directory / self.index).is_file():
            return None
        try:
            components = self._components(directory)
        except ValueError as err:
            return str(err)
        for name, key in self.require:
            if name not in components:
                return f"has no {name.replace('_', ' ')}, which {key} asks for: set {key}: false to run without it"
        return None

    def _components(self, directory: Path) -> list[str]:
        """The components a pipeline's index lists (none for a model without an index)."""
        if self.index is None:
            return []
        try:
            listed = json.loads((directory / self.index).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"has an unreadable {self.index} ({err})") from None
        # A component is a [library, class] pair of names (an absent one [null, null]); other lists are the
        # pipeline's config (Krea 2's text_encoder_select_layers).
        return [
            name
            for name, value in listed.items()
            if not name.startswith("_")
            and isinstance(value, list)
            and len(value) == 2
            and all(isinstance(part, str) for part in value)
        ]

    def _local_hint(self) -> str:
        return (
            f" (expected a {self.what} saved with save_pretrained, or downloaded with `hf download ID --local-dir DIR`)"
        )

    def _cached_snapshot(self) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        first = self.files[0][0]
        cached = try_to_load_from_cache(self.ref, first, revision=self.revision)
        return Path(cached).parent if isinstance(cached, str) else None

    def cached(self) -> bool:
        """Whether the Hub model is complete in the local Hugging Face cache (no request is made)."""
        snapshot = self._cached_snapshot()
        return snapshot is not None and not self._incomplete(snapshot)

    def download_command(self) -> str:
        revision = ["--revision", self.revision] if self.revision else []
        patterns = [arg for pattern in self.include for arg in ("--include", pattern)]
        patterns += [arg for pattern in self.exclude for arg in ("--exclude", pattern)]
        return shlex.join(["hf", "download", self.ref, *revision, *patterns])

    def _advice(self) -> str:
        return (
            f"Download it once with network access (`{self.download_command()}`), or unset HF_HUB_OFFLINE to let "
            f"this run download it, or set {self.key} to a local directory holding it, or to {TINY_RANDOM!r} to try "
            "the tool with tiny random models."
        )

    def _probe_hub(self) -> str | None:
        """One request for the model's first file (no retries): does the Hub serve it to us?"""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            RemoteEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        url = hf_hub_url(self.ref, self.files[0][0], revision=self.revision)
        try:
            get_hf_file_metadata(url, timeout=PROBE_TIMEOUT_S)
        except GatedRepoError:
            return (
                f"{self.title()} is gated: accept its terms on https://huggingface.co/{self.ref} and log in "
                "(`hf auth login` or HF_TOKEN)."
            )
        except RepositoryNotFoundError:
            return (
                f"{self.title()} is not on the Hub (or is private): check the id, or log in with `hf auth login` "
                f"if it is yours; {self.key} may also be a local directory or {TINY_RANDOM!r}."
            )
        except RevisionNotFoundError:
            return f"{self.title()} has no revision {self.revision!r} on the Hub."
        except RemoteEntryNotFoundError:
            return f"{self.title()} is not a {self.what}: the Hub repo has no {self.files[0][0]}."
        except Exception as err:  # noqa: BLE001 - network failures of any kind get the same advice
            status = isinstance(err, HfHubHTTPError) and getattr(err.response, "status_code", None)
            cause = f"the Hub answered {status}" if status else "the Hub is unreachable"
            said = " ".join(f"{type(err).__name__}: {err}".split())  # one line
            return (
                f"{self.title()} is not in the local cache, and {cause} ({scrub(said)}). "
                f"Check the network (and HF_ENDPOINT if set), or download it where there is network "
                f"(`{self.download_command()}`) and run with HF_HUB_OFFLINE=1, or set {self.key} to a local "
                f"directory, or to {TINY_RANDOM!r} to try the tool."
            )
        return None


# The files ``from_pretrained`` reads of a diffusers pipeline in a Hub repo (no variant): the index, the components'
# configs and tokenizers, their safetensors weights (sharded or not); not the repo's single-file checkpoints, fp16
# variants or .bin copies, which can be most of its size.
DIFFUSERS_FILES = (
    "model_index.json",
    "*/*.json",
    "*/*.txt",
    "*/*.model",
    "*/*.jinja",  # chat templates (transformers 5 saves a tokenizer's or processor's apart)
    "*/diffusion_pytorch_model*.safetensors",
    "*/model*.safetensors",
)
DIFFUSERS_EXTRAS = ("*.fp16.*", "*non_ema*")  # matched by the patterns above, not read by the build


def diffusers_pipeline(key: str, ref: str, revision: str | None, safety_checker: bool, checker_key: str) -> HubModel:
    """A diffusers pipeline: its index and components; the safety checker only when the run uses it."""
    return HubModel(
        key,
        ref,
        "diffusers pipeline",
        files=(("model_index.json",),),
        revision=revision,
        index="model_index.json",
        skip=() if safety_checker else (SAFETY_CHECKER,),
        require=((SAFETY_CHECKER, checker_key),) if safety_checker else (),
        include=DIFFUSERS_FILES,
        exclude=DIFFUSERS_EXTRAS,
    )


def transformers_model(key: str, ref: str, what: str, processor: bool = True) -> HubModel:
    """A transformers model with its weights (and, with ``processor``, its image processor and tokenizer).

    The image processor's settings are in ``preprocessor_config.json`` (older transformers, most Hub repos) or in
    ``processor_config.json`` (what transformers 5's ``save_pretrained`` writes); ``from_pretrained`` reads either.
    """
    files = [("config.json",), TRANSFORMERS_WEIGHTS]
    if processor:
        files += [PROCESSOR_FILES, TOKENIZER_FILES]
    return HubModel(key, ref, what, files=tuple(files))


def language_model(key: str, ref: str, revision: str | None) -> HubModel:
    """A transformers causal language model with its weights and tokenizer (``prompt_expansion.model``)."""
    tokenizer = (*TOKENIZER_FILES, "tokenizer.model")
    return HubModel(
        key, ref, "language model", files=(("config.json",), TRANSFORMERS_WEIGHTS, tokenizer), revision=revision
    )


@dataclass(frozen=True)
class TorchvisionWeights(ModelNeed):
    """Weights torchvision fetches by name (``ResNet50_Weights.IMAGENET1K_V2``) from ``url`` into torch.hub's
    cache, where a later run finds them."""

    key: str
    ref: str
    what: str
    url: str
    alternative: str = ""  # other choices of the key, as ", or ..." (``tiny-random`` where the key accepts it)

    def cached_file(self) -> Path:
        import torch.hub

        return Path(torch.hub.get_dir()) / "checkpoints" / self.url.rsplit("/", 1)[-1]

    def problem(self) -> str | None:
        path = self.cached_file()
        if path.is_file():
            return None
        fetch = f"`{shlex.join(['curl', '-L', '--create-dirs', '-o', str(path), self.url])}`"
        if offline():
            return (
                f"{self.title()} is not in torchvision's cache ({path}), and HF_HUB_OFFLINE=1 forbids downloading "
                f"it. Download it once with network access ({fetch}), or unset HF_HUB_OFFLINE to let torchvision "
                f"download it, or set {self.key} to a local checkpoint file{self.alternative}."
            )
        request = urllib.request.Request(self.url, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S):
                return None
        except OSError as err:
            return (
                f"{self.title()} is not in torchvision's cache ({path}), and {self.url} is unreachable ({err}). "
                f"Check the network, or download it where there is network ({fetch}), or set {self.key} to a local "
                f"checkpoint file{self.alternative}."
            )


@dataclass(frozen=True)
class CheckpointFile(ModelNeed):
    """A local state-dict file; ``expected`` compares its tensor shapes with the architecture's (a problem or None)."""

    key: str
    ref: str
    what: str
    expected: Callable[[Shapes], str | None] | None = None

    def title(self) -> str:
        return f"{self.key}: the checkpoint {self.ref!r}"

    def problem(self) -> str | None:
        if self.ref == TINY_RANDOM:
            return None
        path = Path(self.ref).expanduser()
        if not path.is_file():
            return f"{self.title()} is not a file"
        try:
            shapes = checkpoint_shapes(path)
        except ValueError as err:
            return f"{self.title()} is not a {self.what}: {err}"
        mismatch = self.expected(shapes) if self.expected else None
        return f"{self.title()} is not a {self.what}: {mismatch}" if mismatch else None


def checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of a state-dict file (safetensors, or PyTorch's zip or legacy pickle format, read with
    ``weights_only=True``: nothing in it is executed); a ``{"state_dict": ...}`` wrapper is looked into.
    ValueError says why the file is not one."""
    import torch

    with path.open("rb") as handle:
        head = handle.read(8)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as opened:
                return {name: tuple(opened.get_slice(name).get_shape()) for name in opened.keys()}
        except Exception as err:  # noqa: BLE001 - any unreadable file is "not a checkpoint"
            raise ValueError(f"not a readable safetensors file ({type(err).__name__}: {err})") from None
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise ValueError("neither a PyTorch checkpoint (zip or pickle) nor a safetensors file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=head.startswith(b"PK"))
    except Exception as err:  # noqa: BLE001 - any unreadable file is "not a checkpoint"
        raise ValueError(f"torch.load(weights_only=True) cannot read it ({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"it holds a {type(state).__name__}, not a state dict (names to tensors)")
    return {name: tuple(tensor.shape) for name, tensor in state.items()}


def shape_mismatch(shapes: Shapes, expected: Shapes, ignore_prefix: str | None = None) -> str | None:
    """How ``shapes`` differ from ``expected`` (tensors missing, extra or of another shape), or None."""
    keep = {k: v for k, v in shapes.items() if not (ignore_prefix and k.startswith(ignore_prefix))}
    want = {k: v for k, v in expected.items() if not (ignore_prefix and k.startswith(ignore_prefix))}
    missing = [k for k in want if k not in keep]
    extra = [k for k in keep if k not in want]
    wrong = [f"{k} {list(keep[k])} (expected {list(want[k])})" for k in want if k in keep and keep[k] != want[k]]
    parts = [
        f"{label} {', '.join(items[:3])}{', ...' * (len(items) > 3)}"
        for label, items in (("missing", missing), ("unexpected", extra), ("wrong shape:", wrong))
        if items
    ]
    return "; ".join(parts) or None


def module_shapes(module) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of an ``nn.Module`` (build it on the meta device: nothing is allocated)."""
    return {name: tuple(tensor.shape) for name, tensor in module.state_dict().items()}


@dataclass(frozen=True)
class LoraWeights(ModelNeed):
    """A LoRA adapter as diffusers' ``load_lora_weights`` reads it: a weights file, a directory or a Hub repo, with
    ``weight_name`` naming the file in it. Without ``weight_name`` diffusers picks the file itself (its default
    ``pytorch_lora_weights.safetensors``, else the only ``.safetensors`` file), which for a Hub repo means listing the
    repo's files: impossible offline, so there the name is required. The file found must be a state dict holding LoRA
    tensors (names with ``lora`` in them: diffusers', peft's and kohya's layouts)."""

    key: str
    ref: str
    weight_name: str | None
    what: str = "LoRA adapter"
    pipeline: str | None = None  # the generator it is fused into (``model.id``): its denoiser must hold the targets
    revision: str | None = None

    def problem(self) -> str | None:
        if not is_local_path(self.ref):
            return self._hub_problem()
        path = Path(self.ref).expanduser()
        if path.is_dir():
            name = self.weight_name or _guessed_lora_file(str(path))
            if name is None or not (path / name).is_file():
                return f"{self.title()} {self._no_file(name)}"
            path = path / name
        return self._content_problem(path)

    def _hub_problem(self) -> str | None:
        name = self.weight_name
        if name is None:
            if offline():
                return (
                    f"{self.title()} has no weight_name, and with HF_HUB_OFFLINE=1 diffusers cannot list the repo's "
                    f"files to pick one: set {self.key.rsplit('.', 1)[0]}.weight_name to the file's name"
                )
            try:
                name = _guessed_lora_file(self.ref)
            except Exception:  # noqa: BLE001 - the repo cannot be listed: probing its default file says why
                name = None
        name = name or LORA_DEFAULT_FILE
        if problem := _LoraRepo(self.key, self.ref, self.what, files=((name,),)).problem():
            return problem
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(self.ref, name)
        return self._content_problem(Path(cached)) if isinstance(cached, str) else None  # else: downloaded to load

    def _no_file(self, name: str | None) -> str:
        if name is None:
            return f"holds no .safetensors or .bin weights file{self._weight_name_hint()}"
        return f"has no {name}{self._weight_name_hint()}"

    def _weight_name_hint(self) -> str:
        return f" (set {self.key.rsplit('.', 1)[0]}.weight_name to the adapter's file in it)"

    def _content_problem(self, path: Path) -> str | None:
        try:
            shapes = checkpoint_shapes(path)
        except ValueError as err:
            return f"{self.title()}: {path.name} is not a LoRA adapter: {err}"
        if not any("lora" in name.lower() for name in shapes):
            return f"{self.title()}: {path.name} is a state dict without LoRA tensors (no name contains 'lora')"
        mismatch = lora_fit(path, self.pipeline, self.revision) if self.pipeline else None
        return f"{self.title()}: {path.name} is not a LoRA for {self.pipeline!r}: {mismatch}" if mismatch else None


LORA_DEFAULT_FILE = "pytorch_lora_weights.safetensors"  # diffusers' LORA_WEIGHT_NAME_SAFE


@dataclass(frozen=True)
class _LoraRepo(HubModel):
    """The Hub repo of a LoRA adapter: only its weights file is needed (and there is no tiny random LoRA)."""

    def download_command(self) -> str:
        return shlex.join(["hf", "download", self.ref, self.files[0][0]])

    def _advice(self) -> str:
        return (
            f"Download it once with network access (`{self.download_command()}`), or unset HF_HUB_OFFLINE to let "
            f"this run download it, or set {self.key} to a local directory or file holding it."
        )


def _guessed_lora_file(ref: str) -> str | None:
    """The file diffusers' ``load_lora_weights`` reads from a directory or Hub repo given no ``weight_name``
    (its own guess: the default name, else the first ``.safetensors``, else ``.bin``, file)."""
    from diffusers.loaders.lora_base import _best_guess_weight_name

    return _best_guess_weight_name(ref, ".safetensors") or _best_guess_weight_name(ref, ".bin")


def lora_needs(key: str, loras: Sequence, pipeline: str | None = None, revision: str | None = None) -> list[ModelNeed]:
    """The LoRA adapters of ``key`` (``model.loras``: items with ``id`` and ``weight_name``), each checked against
    the denoiser of ``pipeline`` when it is given."""
    return [
        LoraWeights(f"{key}[{i}].id", lora.id, lora.weight_name, pipeline=pipeline, revision=revision)
        for i, lora in enumerate(loras)
    ]


LORA_SUFFIXES = (".lora_A.", ".lora_B.", ".lora.down.", ".lora.up.", ".lora_linear_layer.")


def lora_fit(path: Path, pipeline: str, revision: str | None) -> str | None:
    """How the LoRA at ``path`` does not fit the denoiser (UNet or transformer) of ``pipeline``: targets it lacks,
    or of other sizes; None when it fits, or when the pipeline's configs are not on disk (a Hub model not yet
    downloaded: diffusers says so when it loads). The LoRA is read as the pipeline's own ``lora_state_dict`` reads
    it (kohya's and other layouts become diffusers' names) and the denoiser is built from its config on the meta
    device: no weights are loaded or allocated."""
    index = _pipeline_json(pipeline, revision, "model_index.json")
    component = next((c for c in ("unet", "transformer") if index and c in index), None)
    config = _pipeline_json(pipeline, revision, f"{component}/config.json") if component else None
    if not config:
        return None
    try:
        state = _lora_state(path, index["_class_name"])
    except Exception as err:  # noqa: BLE001 - a layout the pipeline's loader refuses is this LoRA's problem
        return f"{index['_class_name']} cannot read it ({type(err).__name__}: {str(err)[:200]})"
    targets = _lora_targets(state, component)
    found = sorted({name.split(".")[0] for name in state} - {component})
    if not targets and any(not part.startswith("text_encoder") for part in found):  # text encoders only: fine
        return f"it changes no module of the pipeline's {component} (its tensors are for: {', '.join(found)})"
    return _target_mismatch(targets, _meta_modules(config), component) if targets else None


def _pipeline_json(pipeline: str, revision: str | None, name: str) -> dict | None:
    if pipeline == TINY_RANDOM or is_local_path(pipeline):
        path = Path(resolve(pipeline, "sd")) / name
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(pipeline, name, revision=revision)
        path = Path(cached) if isinstance(cached, str) else None
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        return None  # the pipeline check reports an unreadable config


def _lora_state(path: Path, pipeline_class: str) -> dict:
    import diffusers
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    loaded = getattr(diffusers, pipeline_class).lora_state_dict(state)
    return loaded[0] if isinstance(loaded, tuple) else loaded


def _lora_targets(state: dict, component: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """The denoiser modules the LoRA changes, each with its down (``A``) and up (``B``) shapes."""
    targets: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, tensor in state.items():
        if not name.startswith(f"{component}.") or not name.endswith(".weight"):
            continue
        for suffix in LORA_SUFFIXES:
            module, found, rest = name[len(component) + 1 :].partition(suffix)
            if found:
                kind = "A" if suffix in (".lora_A.", ".lora.down.") or "down" in rest else "B"
                targets.setdefault(module, {})[kind] = tuple(tensor.shape)
                break
    return targets


def _meta_modules(config: dict) -> dict:
    import diffusers
    import torch

    with torch.device("meta"):
        model = getattr(diffusers, config["_class_name"]).from_config(config)
    return dict(model.named_modules())


def _target_mismatch(targets: dict, modules: dict, component: str) -> str | None:
    missing = [name for name in targets if name not in modules]
    wrong = []
    for name, shapes in targets.items():
        module = modules.get(name)
        if module is None or not hasattr(module, "weight"):
            continue
        out_size, in_size = module.weight.shape[:2]
        if ("A" in shapes and shapes["A"][1] != in_size) or ("B" in shapes and shapes["B"][0] != out_size):
            wrong.append(
                f"{name} {shapes.get('A', ('?', '?'))[1]}->{shapes.get('B', ('?',))[0]} (has {in_size}->{out_size})"
            )
    parts = [
        f"{label} {', '.join(items[:3])}{', ...' * (len(items) > 3)} ({len(items)} of {len(targets)} targets)"
        for label, items in ((f"no such module in the {component}:", missing), ("other sizes:", wrong))
        if items
    ]
    return "; ".join(parts) or None


@dataclass(frozen=True)
class DecoderMemory(ModelNeed):
    """Whether a diffusers pipeline's VAE can decode one image of the recipe's size on the device (batch 1).

    A lower bound, read from the VAE's ``config.json`` without loading anything: its last decoder blocks work at
    full resolution on ``block_out_channels[0]`` channels (128 for Stable Diffusion), and a convolution there
    holds its input and its output at once: 2 x channels x height x width values of the dtype. The real peak is
    higher (weights, the UNet, attention); a size refused here cannot run, one accepted may still not fit.
    Skipped when the config is not on disk (a Hub model not yet downloaded).
    """

    key: str
    ref: str
    what: str
    revision: str | None
    height: int
    width: int
    dtype_name: str
    device_type: str

    def problem(self) -> str | None:
        channels = self._decoder_channels()
        if channels is None:
            return None
        import torch

        value_bytes = torch.empty((), dtype=getattr(torch, self.dtype_name)).element_size()
        need = 2 * channels * self.height * self.width * value_bytes
        capacity, device = device_memory(self.device_type)
        if need <= capacity:
            return None
        side = int((capacity / (2 * channels * value_bytes)) ** 0.5) // 8 * 8
        return (
            f"{self.key}: {self.height}x{self.width} images cannot be made on this {device}: at batch 1 the VAE "
            f"decoder of {self.ref!r} alone needs at least {need / 2**30:.1f} GiB ({channels} channels of "
            f"{self.height}x{self.width} {self.dtype_name} values, in and out of one convolution), more than its "
            f"{capacity / 2**30:.1f} GiB. Lower generation.height and generation.width (below about {side}x{side} "
            "for this bound alone)."
        )

    def _decoder_channels(self) -> int | None:
        if self.ref == TINY_RANDOM or is_local_path(self.ref):
            path = Path(resolve(self.ref, "sd")) / "vae" / "config.json"
        else:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(self.ref, "vae/config.json", revision=self.revision)
            path = Path(cached) if isinstance(cached, str) else None
        try:
            return int(json.loads(path.read_text(encoding="utf-8"))["block_out_channels"][0]) if path else None
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return None  # no readable VAE config: the component check reports a missing one


def device_memory(device_type: str) -> tuple[int, str]:
    """(bytes, name) of the memory this process's models live in: its GPU's, or the machine's RAM on a CPU."""
    import torch

    if device_type == "cuda":
        index = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
        return torch.cuda.get_device_properties(index).total_memory, f"GPU (cuda:{index})"
    import psutil

    return psutil.virtual_memory().total, "machine (CPU, its RAM)"


def _has_files(directory: Path) -> bool:
    return directory.is_dir() and any(p.is_file() for p in directory.iterdir())


def require_models(needs: Sequence[ModelNeed]) -> None:
    """Raise ``ModelUnavailable`` listing every model of ``needs`` that cannot be used."""
    problems = [problem for need in needs if (problem := need.problem())]
    if problems:
        plural = "s" * (len(problems) > 1)
        raise ModelUnavailable(
            f"{len(problems)} model{plural} this run needs {'are' if plural else 'is'} not available or cannot run; "
            "nothing was loaded or written:\n" + "\n".join(f"- {scrub(p)}" for p in problems)
        )


def report_unavailable(err: ModelUnavailable) -> int:
    """Print ``err`` once per machine (every process of a launch finds the same) and return the exit code."""
    if os.environ.get("LOCAL_RANK", "0") == "0":
        print(f"error: {err}", file=sys.stderr)
    return MODEL_UNAVAILABLE
