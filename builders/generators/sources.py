"""The few small files of a model that decide its family, read before any weights: ``model_index.json`` (the
diffusers pipeline class and its components) or, for a modular pipeline, ``modular_model_index.json`` (its
``ModularPipeline`` class, its blocks class and where each component is loaded from), then the denoiser's
``config.json`` (its native size; for FLUX.1, whether it has the guidance embedding of [dev]).

A local directory is read in place. Of a Hub model only these files are fetched (or found in the local Hub cache),
so a build knows what it is running, and refuses what it cannot run, before it downloads gigabytes of weights.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from builders.generators.known import INDEX, KNOWN_MODELS, MODULAR_INDEX
from synthcore.model_refs import TINY_RANDOM, is_local_path

# ``tiny-random`` is the tiny Stable Diffusion pipeline (synthcore/tiny.py), built on first use: what it is must be
# known without building it (a dry run builds nothing).
_TINY_RANDOM_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
}


class ModelIndexError(ValueError):
    """The model's ``model_index.json`` cannot be read: not a diffusers pipeline, or the Hub cannot be reached."""


class NotCached(ModelIndexError):
    """The Hub cannot be reached (or ``HF_HUB_OFFLINE`` is set) and the file is not in the local Hub cache."""


class ModelFiles:
    """The small JSON files of the model ``model_id`` (at ``revision``)."""

    def __init__(self, model_id: str, revision: str | None = None):
        self.model_id = model_id
        self.revision = revision

    def index(self) -> dict[str, Any]:
        """``model_index.json``, or ``modular_model_index.json`` for a repo that ships only a modular pipeline
        (FLUX.3): what ``ModularPipeline.from_pretrained`` reads, in the same order."""
        if self.model_id == TINY_RANDOM:
            return _TINY_RANDOM_INDEX
        index = self.modular_index() or self.json(INDEX)
        if index is None:
            raise ModelIndexError(
                f"model.id: {self.model_id!r} has no {INDEX} (nor {MODULAR_INDEX}), so it is not a diffusers "
                "pipeline (a single-file checkpoint or a bare model must be converted to the diffusers layout first)"
            )
        return index

    def modular_index(self) -> dict[str, Any] | None:
        """``modular_model_index.json`` (the modular pipeline's class, its blocks and its components' sources);
        None for a classic pipeline."""
        try:
            return None if self.json(INDEX) is not None else self.json(MODULAR_INDEX)
        except NotCached:
            return self._cached_modular_index()

    def _cached_modular_index(self) -> dict[str, Any] | None:
        """Offline, a modular repo's index from the cache (its ``model_index.json``, which it has none of, cannot be
        told from one not yet downloaded)."""
        try:
            return self.json(MODULAR_INDEX)
        except NotCached:
            return None

    def pipeline_class(self) -> str:
        name = self.index().get("_class_name")
        if not isinstance(name, str):
            which = MODULAR_INDEX if self.modular_index() else INDEX
            raise ModelIndexError(f"model.id: the {which} of {self.model_id!r} names no pipeline class (_class_name)")
        return name

    def ships_safety_checker(self) -> bool:
        """Whether the pipeline comes with Stable Diffusion's safety checker (SD 1.x does, SD 2.x does not)."""
        entry = self.index().get("safety_checker")
        return isinstance(entry, list) and all(part is not None for part in entry)

    def config(self, component: str) -> dict[str, Any]:
        """A component's ``config.json`` (empty when the model has none, and for ``tiny-random``)."""
        return self.json(f"{component}/config.json") or {}

    def json(self, filename: str) -> dict[str, Any] | None:
        """The file's JSON, None when the model has no such file. Offline, a well-known model's file that is not
        in the cache is answered by the table (``known.py``: what the plug-ins read of it)."""
        if self.model_id == TINY_RANDOM:
            return None
        try:
            return _read_json(self.model_id, self.revision, filename)
        except NotCached:
            if self.model_id not in KNOWN_MODELS:
                raise
            return KNOWN_MODELS[self.model_id].file(filename)


@cache
def _read_json(model_id: str, revision: str | None, filename: str) -> dict[str, Any] | None:
    local = is_local_path(model_id)
    path = Path(model_id).expanduser() / filename if local else _hub_file(model_id, revision, filename)
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelIndexError(f"model.id: cannot read {filename} of {model_id!r}: {err}") from None


def _hub_file(model_id: str, revision: str | None, filename: str) -> Path | None:
    """The file from the Hub (or the local Hub cache); None when the repo has no such file."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f" at revision {revision!r}" if revision else ""
    try:
        return Path(hf_hub_download(model_id, filename, revision=revision))
    except LocalEntryNotFoundError:
        raise NotCached(
            f"model.id: cannot fetch {filename} of {model_id!r}{at}: the Hub cannot be reached (or HF_HUB_OFFLINE "
            "is set) and the file is not in the local Hub cache; connect once, or give a local directory"
        ) from None
    except GatedRepoError:
        raise ModelIndexError(
            f"model.id: {model_id!r} is gated: accept its terms on its Hub page and log in (`hf auth login`)"
        ) from None
    except RepositoryNotFoundError:
        raise ModelIndexError(
            f"model.id: no Hub model {model_id!r} (or it is private and you are not logged in)"
        ) from None
    except RevisionNotFoundError:
        raise ModelIndexError(f"model.revision: {model_id!r} has no revision {revision!r}") from None
    except EntryNotFoundError:
        return None
    except (HfHubHTTPError, OSError) as err:
        raise ModelIndexError(f"model.id: cannot fetch {filename} of {model_id!r}{at}: {err}") from None


def ships_safety_checker(model_id: str, revision: str | None) -> bool:
    """Whether the pipeline has its own checker (SD 1.x); a family without one runs the standalone checker. An
    index that cannot be read counts as "has one", so the pipeline check reports what is missing."""
    try:
        return ModelFiles(model_id, revision).ships_safety_checker()
    except ModelIndexError:
        return True
