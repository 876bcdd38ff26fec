"""Dataset-card metadata any dataset in our layout needs, and Markdown-safe text for every card.

The card's YAML (``configs`` naming the files of each split, ``dataset_info`` with features and split sizes) is
what ``load_dataset`` and the Hub read; a build's card (``builders.card``) and a standalone-scored dataset's card
(``eval.standalone``) both start from it.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import datasets
from huggingface_hub import DatasetCard, DatasetCardData

from synthcore.layout import split_patterns
from synthcore.model_refs import TINY_RANDOM, is_local_path

CARD = "README.md"
_SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` bin of a row count."""
    return next((name for limit, name in _SIZE_CATEGORIES if rows < limit), "n>1B")


def layout_card_data(
    pretty_name: str, features: datasets.Features, split_sizes: datasets.SplitDict, tags: list[str], **metadata
) -> DatasetCardData:
    """Card metadata of any image-classification dataset in the Hub layout."""
    info = datasets.DatasetInfo(features=features, splits=split_sizes, config_name="default")
    return DatasetCardData(
        task_categories=["image-classification"],
        size_categories=[size_category(sum(s.num_examples for s in split_sizes.values()))],
        tags=tags,
        pretty_name=pretty_name,
        **metadata,
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": split_patterns(split)} for split in split_sizes],
            }
        ],
        dataset_info=info._to_yaml_dict(),
    )


def save_card(root: Path, data: DatasetCardData, body: str) -> DatasetCard:
    """``README.md`` at ``root`` from YAML metadata and a markdown body."""
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    card.save(Path(root) / CARD)
    return card


def md(text: str) -> str:
    """Text safe inside a Markdown line or table cell, and as HTML: no line breaks, markup characters escaped,
    ``&``, ``<`` and ``>`` as entities, so no tag, link or script can be written through a name or prompt
    (quotes stay: they are harmless in Markdown text)."""
    flat = " ".join(str(text).split())
    return re.sub(r"([\\`*_\[\]|#~!()])", r"\\\1", html.escape(flat, quote=False))


def model_link(ref: str, revision: str | None = None) -> str:
    """A model reference as Markdown: a link to its Hub page, or what it is when it has none."""
    if ref == TINY_RANDOM:
        return "a tiny random model built locally (`tiny-random`, for tests: the images are noise)"
    if is_local_path(ref):
        return f"the local model `{md(Path(ref).name)}`"
    url = f"https://huggingface.co/{ref}" + (f"/tree/{revision}" if revision else "")
    return f"[{ref}]({url})" + (f" (revision `{revision}`)" if revision else "")
