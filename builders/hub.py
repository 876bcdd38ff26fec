"""The Hugging Face Hub: push an exported dataset, fetch a published dataset's recipe.

Everything goes through huggingface_hub's own API (``create_repo``, ``upload_folder``, ``hf_hub_download``) and
its own token resolution (``HF_TOKEN``, ``hf auth login``). The token is never read into anything we write or
log; error texts are scrubbed of it all the same, since they may quote a server's reply.

A push happens after the dataset is complete on disk and never changes it (beyond re-rendering the card for the
repo it goes to), so a failed push loses nothing and is retried alone with ``build.py ... --push-only``.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from huggingface_hub import DatasetCard, get_token, hf_hub_download
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from builders.card import refreshed_card
from builders.formats.choice import DEFAULT_FORMATS
from builders.formats.export import published_formats
from builders.formats.registry import FORMATS, format_folders
from builders.recipe import HubSettings, Recipe, RecipeError, load_recipe
from builders.store import Store
from synthcore.cardmeta import CARD
from synthcore.hub import BUILDING, describe_error, push_folder, uploads_while_building
from synthcore.layout import HUB_FILE
from synthcore.outdir import WORK_DIR
from synthcore.readback import split_files

log = logging.getLogger("synthdata")

IGNORE_PATTERNS = [f"{WORK_DIR}/**"]
RECIPE_FILE = "recipe.yaml"


class IncompleteDataset(RuntimeError):
    """There is no complete exported dataset of this recipe where the push should take it from."""


# -- where to push ----------------------------------------------------------------------------------------------
def with_push_target(recipe: Recipe, repo_id: str | None, private: bool) -> Recipe:
    """The recipe with the command line's Hub repo and visibility over its ``hub`` section, checked."""
    hub = recipe.hub.model_copy(
        update={"repo_id": repo_id or recipe.hub.repo_id, "private": private or recipe.hub.private}
    )
    for key, on in (("--private (or hub.private)", hub.private), ("hub.push_during_build", hub.push_during_build)):
        if on and not hub.repo_id:
            raise ValueError(
                f"{key} needs a repo to push to: give --push-to-hub USER/NAME or set hub.repo_id in the recipe"
            )
    if hub.repo_id:
        check_repo_id(hub.repo_id)
    return recipe.model_copy(update={"hub": hub})


def check_repo_id(repo_id: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"Hub repo id {repo_id!r} is not valid: {err}") from None
    if "/" not in repo_id:
        raise ValueError(f"Hub repo id {repo_id!r} needs its owner: USER/NAME or ORG/NAME")


def missing_token_warning() -> str | None:
    """A warning to give before a long build whose push would fail for want of a token."""
    if get_token() is None:
        return (
            "no Hugging Face token found (HF_TOKEN unset, `hf auth login` not run): "
            "the dataset will be built, but the push will fail"
        )
    return None


# -- push ---------------------------------------------------------------------------------------------------------
def push_dataset(root: Path, recipe: Recipe) -> str:
    """Upload the exported dataset at ``root`` to the Hub dataset repo ``recipe.hub.repo_id``; returns its URL.

    Raises ``IncompleteDataset`` before anything is sent when ``root`` is not a complete export of ``recipe``,
    and ``PushError`` (naming the repo, the cause and what to do) when the Hub cannot be reached or refuses. The
    card that names the repo is uploaded, and written locally only once the push succeeded.
    """
    root, repo_id = Path(root), recipe.hub.repo_id
    problems = dataset_problems(root, recipe)
    if problems:
        raise IncompleteDataset(
            f"{root} is not a complete dataset of recipe {recipe.name!r}:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    card = refreshed_card(root, recipe)  # names the repo it goes to
    unasked = [f"{folder}/**" for folder in format_folders() if folder not in recipe.hub.formats]
    url = push_folder(
        root,
        repo_id,
        repo_type="dataset",
        private=recipe.hub.private,
        commit_message=f"Upload {recipe.name} (built by synthdata)",
        ignore_patterns=IGNORE_PATTERNS + unasked,
        delete_patterns=_replaced_folders(root),
        card=str(card),
    )
    card.save(root / CARD)
    return url


def _replaced_folders(root: Path) -> list[str]:
    """Folders the upload replaces whole on the Hub, so files of an earlier, larger build do not linger there,
    ``building/`` (the shards uploaded while the build ran: the dataset's files replace them), and every format's
    folder (one not uploaded now would describe older data)."""
    folders = {p.name for p in root.iterdir() if p.is_dir() and p.name != WORK_DIR} | set(format_folders())
    return [f"{name}/**" for name in sorted(folders)] + [f"{BUILDING}/**"]


def uploads_during_build(store: Store, hub_settings: HubSettings) -> AbstractContextManager:
    """With ``hub.push_during_build``, finished shards go to the repo's ``building/`` while the build runs (main
    process; ``synthcore.hub.BuildingUploader``); otherwise nothing."""
    if not (hub_settings.push_during_build and hub_settings.repo_id):
        return nullcontext()
    return uploads_while_building(
        store.shards, hub_settings.repo_id, "dataset", hub_settings.private, hub_settings.upload_interval
    )


# -- is there a complete dataset to push? ------------------------------------------------------------------------
def dataset_problems(root: Path, recipe: Recipe) -> list[str]:
    """Why ``root`` is not a complete export of ``recipe`` (empty when it is). Reads file names and footers only."""
    if not (root / CARD).is_file() or not (root / RECIPE_FILE).is_file():
        return [f"no exported dataset here ({CARD} and {RECIPE_FILE} missing): build it first"]
    try:
        stored = load_recipe(root / RECIPE_FILE)
    except RecipeError as err:
        return [str(err)]
    if _dataset_part(stored) != _dataset_part(recipe):
        return [
            f"{root / RECIPE_FILE} is not this recipe: the dataset here was built from another one (rebuild it, "
            "or choose --output-dir)"
        ]
    card_splits = _card_splits(root)
    problems = _format_problems(root, recipe) + [
        f"split {s!r} of the recipe is not in {CARD}" for s in _splits_with_rows(root, recipe) if s not in card_splits
    ]
    for split, rows in card_splits.items():
        problems += _split_problems(root, split, rows)
    return problems


def _dataset_part(recipe: Recipe) -> Recipe:
    """What decides the rows: not where they are pushed, nor the formats written beside them."""
    return recipe.without_hub().model_copy(update={"formats": DEFAULT_FORMATS})


def _format_problems(root: Path, recipe: Recipe) -> list[str]:
    """The formats ``hub.formats`` asks to upload must be written for this data, in folders the Hub takes."""
    published = {fmt.name: fmt for fmt in published_formats(root)}
    problems = [
        f"hub.formats: no {name}/ written from this data; write it first: python build.py {root} --export-only "
        f"--formats {name}"
        for name in recipe.hub.formats
        if name not in published and FORMATS[name].folder
    ]
    asked = [published[name] for name in recipe.hub.formats if name in published]
    return problems + [problem for fmt in asked for problem in fmt.hub_problems(root / fmt.folder)]


def _splits_with_rows(root: Path, recipe: Recipe) -> list[str]:
    """The recipe's splits that kept rows: one the filters emptied is rightly absent from the card."""
    from eval.summary import SUMMARY_FILE, read_summary

    if not (root / SUMMARY_FILE).exists():
        return list(recipe.splits)
    kept: dict[str, int] = {}
    for row in read_summary(root).classes:
        kept[row.split] = kept.get(row.split, 0) + row.kept
    return [split for split in recipe.splits if kept.get(split, 0)]


def _card_splits(root: Path) -> dict[str, int]:
    info = DatasetCard.load(root / CARD).data.dataset_info or {}
    infos = info if isinstance(info, list) else [info]
    return {
        s["name"]: s["num_examples"]
        for i in infos
        if i.get("config_name", "default") == "default"
        for s in i.get("splits", [])
    }


def _split_problems(root: Path, split: str, rows: int) -> list[str]:
    import pyarrow.parquet as pq

    files = [Path(f) for f in split_files(root, split)]
    names = [m for m in map(HUB_FILE.match, (f.name for f in files)) if m and m["split"] == split]
    counts = {int(m["count"]) for m in names}
    if not names or len(counts) != 1 or sorted(int(m["index"]) for m in names) != list(range(counts.pop())):
        return [f"data/{split}-*.parquet: files missing (an interrupted export?): found {[f.name for f in files]}"]
    try:
        found = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file, whatever pyarrow says about it
        return [f"data/{split}-*.parquet: unreadable file ({err})"]
    return (
        []
        if found == rows
        else [f"split {split!r}: {found} rows in data/ but {rows} in {CARD} (an interrupted export?)"]
    )


# -- a published dataset's recipe ---------------------------------------------------------------------------------
def download_recipe(repo_id: str) -> Path:
    """``recipe.yaml`` of a Hub dataset (only that file), for rebuilding it."""
    try:
        return Path(hf_hub_download(repo_id, RECIPE_FILE, repo_type="dataset"))
    except Exception as err:  # noqa: BLE001 - offline, unknown repo, no such file, no rights: all end here
        raise FileNotFoundError(
            f"cannot fetch {RECIPE_FILE} of the Hub dataset {repo_id}: {describe_error(err)}. "
            f"Check the id and the network (HF_HUB_OFFLINE must be unset), or download {RECIPE_FILE} yourself "
            "and pass its path."
        ) from None
