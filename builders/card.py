"""The dataset card (``README.md`` at the dataset root), made with huggingface_hub's card tools."""

from __future__ import annotations

from pathlib import Path

import datasets
from huggingface_hub import DatasetCard, DatasetCardData

from builders.recipe import Recipe, recipe_to_yaml


def card_data(recipe: Recipe, features: datasets.Features, split_sizes: datasets.SplitDict) -> DatasetCardData:
    """YAML metadata the Hub and ``load_dataset`` understand: configs pointing at data/, features, splits."""
    return layout_card_data(recipe.name, features, split_sizes, tags=["synthetic", "stable-diffusion"])


def layout_card_data(pretty_name: str, features: datasets.Features, split_sizes: datasets.SplitDict, tags: list[str]) -> DatasetCardData:
    """Card metadata of any image-classification dataset in the Hub layout (also standalone-scored ones)."""
    info = datasets.DatasetInfo(features=features, splits=split_sizes, config_name="default")
    return DatasetCardData(
        task_categories=["image-classification"],
        tags=tags,
        pretty_name=pretty_name,
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*"} for split in split_sizes],
            }
        ],
        dataset_info=info._to_yaml_dict(),
    )


def write_card(root: Path, recipe: Recipe, features: datasets.Features, split_sizes: datasets.SplitDict) -> DatasetCard:
    data = card_data(recipe, features, split_sizes)
    body = (
        f"# {recipe.name}\n\n{recipe.description}\n\n"
        f"## Recipe\n\nRebuild with `python build.py recipe.yaml`:\n\n```yaml\n{recipe_to_yaml(recipe)}```\n"
    )
    return save_card(root, data, body)


def save_card(root: Path, data: DatasetCardData, body: str) -> DatasetCard:
    """``README.md`` at ``root``: the YAML metadata, then the markdown body."""
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    card.save(root / "README.md")
    return card
