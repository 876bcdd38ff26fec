"""Model references: Hub ids, local directories, or ``tiny-random``; what ``from_pretrained`` is handed, and
which commit a Hub model resolved to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TINY_RANDOM = "tiny-random"


def is_local_path(ref: str) -> bool:
    """A reference that names a directory rather than a Hub repo (``org/name``)."""
    return ref.startswith(("/", "./", "../", "~")) or ref.count("/") > 1 or Path(ref).expanduser().exists()


def resolve(ref: str, tiny_part: str) -> str:
    """The string to hand to ``from_pretrained``: ``tiny-random`` becomes the local directory of the tiny model."""
    if ref == TINY_RANDOM:
        from synthcore.tiny import tiny_models_dir

        return str(tiny_models_dir() / tiny_part)
    return str(Path(ref).expanduser()) if is_local_path(ref) else ref


@dataclass(frozen=True)
class Placement:
    """The device a process works on and the dtype its models run in."""

    device: str
    dtype_name: str

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.dtype_name)


def choose_dtype(requested: str, device_type: str) -> str:
    """``auto`` means float16 on a GPU and float32 on a CPU, where half precision is slow or unsupported."""
    if requested != "auto":
        return requested
    return "float16" if device_type == "cuda" else "float32"


def check_model_ref(value: str) -> str:
    """A model reference that can be used: a local path must exist (a Hub id is checked when it loads)."""
    if value != TINY_RANDOM and is_local_path(value) and not Path(value).expanduser().exists():
        raise ValueError(
            f"local model path {value!r} does not exist (expected a Hub id, an existing directory, or {TINY_RANDOM!r})"
        )
    return value


def hub_commit(ref: str, revision: str | None, filename: str) -> str | None:
    """The commit a Hub model's ``filename`` resolved to in the local cache; None for local or uncached models."""
    if ref == TINY_RANDOM or is_local_path(ref):
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(ref, filename, revision=revision)
    return Path(cached).parent.name if isinstance(cached, str) else None
