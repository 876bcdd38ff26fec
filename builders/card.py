"""The dataset card (``README.md`` at the dataset root), made with huggingface_hub's card tools.

Its YAML metadata is what the Hub and ``load_dataset`` read: ``configs`` (which files make which split) and
``dataset_info`` (features, class names, split sizes), plus license, task, size category and tags. Its text,
rendered from ``card_template.md`` with ``DatasetCard.from_template``, tells a person what the dataset is: the
classes and their prompts, the models (with links), the generation parameters, counts and scores per split and
class, the pictures, how to load it, and the full recipe that rebuilds it. Everything in it is read from the
recipe and from the files of the output directory, so it can be re-rendered at any time (``refresh_card``).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import datasets
from huggingface_hub import DatasetCard, DatasetCardData

from builders.models import TINY_RANDOM, is_local_path
from builders.pictures import HISTOGRAM_NAME, class_title, samples_name
from builders.plan import split_prompts
from builders.readback import stored_features
from builders.recipe import Recipe, recipe_to_yaml

log = logging.getLogger("synthdata")

CARD = "README.md"
TEMPLATE = Path(__file__).with_name("card_template.md")
PROMPTS_SHOWN = 12
RESNET50_DOCS = "https://docs.pytorch.org/vision/stable/models/generated/torchvision.models.resnet50.html"

# The licenses of well-known generators; the images (and so the dataset) come under the generator's license.
GENERATOR_LICENSES = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "creativeml-openrail-m",
    "runwayml/stable-diffusion-v1-5": "creativeml-openrail-m",
    "CompVis/stable-diffusion-v1-4": "creativeml-openrail-m",
    "stabilityai/stable-diffusion-2-1": "openrail++",
    "stabilityai/stable-diffusion-2-1-base": "openrail++",
    TINY_RANDOM: "creativeml-openrail-m",  # stands in for SD 1.5 in tests
}
_SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` bin of a row count."""
    return next((name for limit, name in _SIZE_CATEGORIES if rows < limit), "n>1B")


def license_metadata(model_id: str) -> dict:
    """``license`` (and for an unknown generator ``license_name``/``license_link``, as the Hub asks for ``other``)."""
    if model_id in GENERATOR_LICENSES:
        return {"license": GENERATOR_LICENSES[model_id]}
    slug = re.sub(r"[^a-z0-9.]+", "-", Path(model_id).name.lower()).strip("-") or "generator"
    link = {} if is_local_path(model_id) else {"license_link": f"https://huggingface.co/{model_id}"}
    return {"license": "other", "license_name": f"{slug}-license", **link}


def card_data(recipe: Recipe, features: datasets.Features, split_sizes: datasets.SplitDict) -> DatasetCardData:
    """YAML metadata the Hub and ``load_dataset`` understand: configs pointing at data/, features, splits,
    plus the generator's license and what the Hub shows about a synthetic dataset."""
    return layout_card_data(
        recipe.name,
        features,
        split_sizes,
        tags=["synthetic", "stable-diffusion", "text-to-image"],
        **license_metadata(recipe.model.id),
        task_ids=["multi-class-image-classification"],
        annotations_creators=["machine-generated"],
        source_datasets=["original"],
    )


def layout_card_data(
    pretty_name: str, features: datasets.Features, split_sizes: datasets.SplitDict, tags: list[str], **metadata
) -> DatasetCardData:
    """Card metadata of any image-classification dataset in the Hub layout (also standalone-scored ones)."""
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
                "data_files": [{"split": split, "path": f"data/{split}-*"} for split in split_sizes],
            }
        ],
        dataset_info=info._to_yaml_dict(),
    )


def write_card(root: Path, recipe: Recipe, features: datasets.Features, split_sizes: datasets.SplitDict) -> DatasetCard:
    """Write ``README.md`` for the exported dataset at ``root`` (after data/, recipe.yaml, build_info.json, pictures)."""
    return render_card(Path(root), recipe, card_data(recipe, features, split_sizes))


def refresh_card(root: Path, recipe: Recipe) -> DatasetCard:
    """Re-render the card's text for ``recipe`` (say, a new Hub repo id), keeping its YAML metadata as it is."""
    return render_card(Path(root), recipe, DatasetCard.load(Path(root) / CARD).data)


def render_card(root: Path, recipe: Recipe, data: DatasetCardData) -> DatasetCard:
    card = DatasetCard.from_template(data, template_path=str(TEMPLATE), **card_context(root, recipe, data))
    card.save(root / CARD)
    return card


def save_card(root: Path, data: DatasetCardData, body: str) -> DatasetCard:
    """``README.md`` at ``root`` from YAML metadata and a markdown body (cards of datasets without a recipe)."""
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    card.save(root / CARD)
    return card


# -- what the text says -------------------------------------------------------------------------------------------
def card_context(root: Path, recipe: Recipe, data: DatasetCardData) -> dict:
    info = _default_info(data)
    splits = [s["name"] for s in info["splits"]]
    features = stored_features(root, splits[0])
    build_info = _build_info(root)
    return {
        "title": _md(recipe.name),
        "name": recipe.name,
        "description": _md(recipe.description.strip()),
        "total_rows": sum(s["num_examples"] for s in info["splits"]),
        "generator": _model_link(recipe.model.id, recipe.model.revision),
        "scorers": [role for role, _ in _scorer_models(recipe)],
        "classes": [_class_entry(recipe, label, name, splits) for label, name in enumerate(recipe.class_names)],
        "prompt_disjoint": recipe.prompt_disjoint,
        "pictures": _pictures(root, recipe),
        "summary_table": summary_table(root, splits),
        "models": [{"role": "generator", "model": _model_link(recipe.model.id, recipe.model.revision)}]
        + [{"role": role, "model": model} for role, model in _scorer_models(recipe)],
        "parameters": _parameters(recipe, build_info),
        "columns": [(name, _type_name(feature)) for name, feature in features.items()],
        "repo_id": recipe.hub.repo_id or "USER/NAME",
        "runtime": _runtime(build_info),
        "versions": ", ".join(f"{k} {v}" for k, v in build_info.get("versions", {}).items()) or "unknown versions",
        **_recipe_block(recipe),
        "license_text": _license_text(data),
    }


def _recipe_block(recipe: Recipe) -> dict:
    """The recipe as YAML (its ``hub`` section blank: a rebuild must not push to this repo) and a code fence
    longer than any run of backticks in it."""
    text = recipe_to_yaml(recipe.without_hub())
    return {"recipe_yaml": text, "fence": "`" * max(3, 1 + max(map(len, re.findall("`+", text)), default=0))}


def _default_info(data: DatasetCardData) -> dict:
    info = data.dataset_info
    return next(i for i in info if i.get("config_name", "default") == "default") if isinstance(info, list) else info


def _build_info(root: Path) -> dict:
    path = root / "build_info.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell or line: markup characters escaped, no line breaks."""
    return re.sub(r"([\\`*_\[\]<>|#~])", r"\\\1", " ".join(str(text).split()))


def _model_link(ref: str, revision: str | None = None) -> str:
    if ref == TINY_RANDOM:
        return "a tiny random model built locally (`tiny-random`, for tests: the images are noise)"
    if is_local_path(ref):
        return f"the local model `{_md(Path(ref).name)}`"
    url = f"https://huggingface.co/{ref}" + (f"/tree/{revision}" if revision else "")
    return f"[{ref}]({url})" + (f" (revision `{revision}`)" if revision else "")


def _scorer_models(recipe: Recipe) -> list[tuple[str, str]]:
    scorers = []
    clip, resnet = recipe.scoring.clip, recipe.scoring.resnet50
    if clip.enabled:
        templates = ", ".join(f"“{_md(t)}”" for t in clip.label_templates)
        scorers.append(("CLIP (zero-shot class probabilities)", f"{_model_link(clip.model)}; class texts from {templates}"))
    if resnet.enabled:
        weights = resnet.weights
        if weights == TINY_RANDOM:
            model = _model_link(TINY_RANDOM)
        elif Path(weights).suffix:
            model = f"torchvision ResNet50, local checkpoint `{_md(Path(weights).name)}`"
        else:
            model = f"[torchvision ResNet50, `ResNet50_Weights.{weights}`]({RESNET50_DOCS})"
        scorers.append(("ResNet50 (ImageNet top-5)", model))
    return scorers


def _class_entry(recipe: Recipe, label: int, name: str, splits: list[str]) -> dict:
    spec = recipe.classes[name]
    by_split = split_prompts(recipe, name) if recipe.prompt_disjoint else {"": recipe.prompts_of(name)}
    return {
        "label": label,
        "name": _md(name),
        "label_text": _md(recipe.label_text(name)),
        "imagenet": ", ".join(_md(c) for c in spec.imagenet_classes),
        "negative_prompt": _md(recipe.negative_prompt_of(name)),
        "guidance_scale": recipe.guidance_scale_of(name),
        "prompts": {
            split: {"shown": [f"“{_md(p)}”" for p in prompts[:PROMPTS_SHOWN]], "more": max(0, len(prompts) - PROMPTS_SHOWN)}
            for split, prompts in by_split.items()
            if not split or split in splits
        },
    }


def _pictures(root: Path, recipe: Recipe) -> dict:
    samples = [
        {"path": samples_name(label), "alt": f"sample images of {class_title(label, name)}, per split"}
        for label, name in enumerate(recipe.class_names)
        if (root / samples_name(label)).exists()
    ]
    return {"samples": samples, "histogram": HISTOGRAM_NAME if (root / HISTOGRAM_NAME).exists() else None}


def _parameters(recipe: Recipe, build_info: dict) -> list[tuple[str, str]]:
    g, m, o = recipe.generation, recipe.model, recipe.output
    safety = f"on; flagged images are {'regenerated (up to %d times)' % m.max_regenerations if m.on_flagged == 'regenerate' else 'dropped'}" if m.safety_checker else "off"
    return [
        ("seed", f"{recipe.seed} (every image's seed derives from it and the image's identity)"),
        ("scheduler", m.scheduler if m.scheduler != "default" else "the model's own"),
        ("inference steps", str(g.num_inference_steps)),
        ("guidance scale", str(g.guidance_scale) + (" (some classes override it, see above)" if any(c.guidance_scale is not None for c in recipe.classes.values()) else "")),
        ("image size", f"{g.width} × {g.height}"),
        ("images per prompt", str(g.images_per_prompt)),
        ("batch size", str(g.batch_size)),
        ("safety checker", safety),
        ("device and dtype", _runtime(build_info)),
        ("image format", o.image_format + (f" (quality {o.quality})" if o.image_format != "png" else "")),
    ]


def _runtime(build_info: dict) -> str:
    fingerprint = build_info.get("fingerprint", {})
    return f"{fingerprint['device_type']}, {fingerprint['model.dtype']}" if fingerprint else "not recorded"


def _type_name(feature) -> str:
    if isinstance(feature, datasets.ClassLabel):
        return f"ClassLabel ({feature.num_classes} classes, see above)"
    if isinstance(feature, datasets.Value):
        return feature.dtype
    if isinstance(feature, datasets.List):
        return f"list of {_type_name(feature.feature)}"
    return type(feature).__name__


def _license_text(data: DatasetCardData) -> str:
    if data.get("license") != "other":
        return f"`{data.get('license')}`"
    link = data.get("license_link")
    return f"see [the generator's card]({link})" if link else "see the generator's own license"


# -- counts and scores per split and class ------------------------------------------------------------------------
def summary_table(root: Path, splits: list[str]) -> str:
    """The scoring step's summary (``summary.json`` beside the data, or made now) as a Markdown table."""
    from eval.summary import SUMMARY_FILE, read_summary, summarize

    summary = read_summary(root) if (root / SUMMARY_FILE).exists() else summarize(root, splits=splits)
    fmt = lambda value, spec: "-" if value is None else format(value, spec)  # noqa: E731
    lines = [
        "| split | class | generated | kept | dropped | mean p(true) | median p(true) | mean CLIPScore | ResNet50 agreement |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c.split} | {_md(c.class_name)} | {c.generated} | {c.kept} | {c.dropped} | {fmt(c.clip_true_prob_mean, '.3f')} | "
        f"{fmt(c.clip_true_prob_median, '.3f')} | {fmt(c.clip_score_mean, '.2f')} | {fmt(c.resnet50_agreement, '.0%')} |"
        for c in summary.classes
    ]
    return "\n".join(lines)
