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
import re
from pathlib import Path

import datasets
from huggingface_hub import DatasetCard, DatasetCardData

from builders.formats.export import published_formats
from builders.guided import card_rows, guidance_warnings
from builders.plan import prompts_with_images
from builders.recipe import Recipe, recipe_to_yaml
from builders.refilter import attempts_text
from eval.pictures import EMBEDDING_MAP_NAME, HISTOGRAM_NAME, picture_alt, samples_name
from eval.scorers import enabled_scorers
from eval.summary import DatasetSummary, format_stat, leakage_warning, quality_markdown, read_summary
from eval.tallies import STATS
from synthcore.cardmeta import CARD, layout_card_data, md, model_link
from synthcore.model_refs import TINY_RANDOM, is_local_path
from synthcore.readback import stored_features

TEMPLATE = Path(__file__).with_name("card_template.md")
BUILD_INFO = "build_info.json"
PROMPTS_SHOWN = 12


def _other_license(name: str, repo: str, link: str | None = None) -> dict:
    """A license the Hub does not list: its name, and where its terms are (``link``; by default the license file in
    the model's repo)."""
    return {
        "license": "other",
        "license_name": name,
        "license_link": link or f"https://huggingface.co/{repo}/blob/main/LICENSE.md",
    }


_STABILITY_COMMUNITY = "stabilityai-ai-community"
# The licenses of well-known generators; the images (and so the dataset) come under the generator's license.
GENERATOR_LICENSES: dict[str, str | dict] = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "creativeml-openrail-m",
    "runwayml/stable-diffusion-v1-5": "creativeml-openrail-m",
    "CompVis/stable-diffusion-v1-4": "creativeml-openrail-m",
    "stabilityai/stable-diffusion-2-1": "openrail++",
    "stabilityai/stable-diffusion-2-1-base": "openrail++",
    "stabilityai/stable-diffusion-xl-base-1.0": "openrail++",
    "ByteDance/SDXL-Lightning": "openrail++",
    "stabilityai/sdxl-turbo": _other_license("sai-nc-community", "stabilityai/sdxl-turbo"),
    "stabilityai/sd-turbo": _other_license("sai-nc-community", "stabilityai/sd-turbo"),
    **{
        repo: _other_license(_STABILITY_COMMUNITY, repo)
        for repo in (
            "stabilityai/stable-diffusion-3-medium-diffusers",
            "stabilityai/stable-diffusion-3.5-medium",
            "stabilityai/stable-diffusion-3.5-large",
            "stabilityai/stable-diffusion-3.5-large-turbo",
        )
    },
    "black-forest-labs/FLUX.1-dev": _other_license("flux-1-dev-non-commercial-license", "black-forest-labs/FLUX.1-dev"),
    "black-forest-labs/FLUX.1-schnell": "apache-2.0",
    **{
        repo: _other_license("flux-kommunity-license", repo)
        for repo in ("black-forest-labs/flux-3-image-klein", "black-forest-labs/flux-3-image-klein-base")
    },
    "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS": "openrail++",
    "PixArt-alpha/PixArt-Sigma-XL-2-512-MS": "openrail++",
    "Tongyi-MAI/Z-Image-Turbo": "apache-2.0",
    "Tongyi-MAI/Z-Image": "apache-2.0",
    "black-forest-labs/FLUX.2-klein-4B": "apache-2.0",
    "black-forest-labs/FLUX.2-klein-base-4B": "apache-2.0",
    **{
        repo: _other_license("flux-non-commercial-license", repo)
        for repo in (
            "black-forest-labs/FLUX.2-dev",
            "black-forest-labs/FLUX.2-klein-9B",
            "black-forest-labs/FLUX.2-klein-base-9B",
        )
    },
    **{
        repo: _other_license("krea-2-community", repo, "https://www.krea.ai/krea-2-licensing")
        for repo in (
            "CalamitousFelicitousness/Krea-2-Turbo-Diffusers",
            "CalamitousFelicitousness/Krea-2-Base-Diffusers",
        )
    },
    "Qwen/Qwen-Image-2.1-Turbo": _other_license(
        "qwen-research-license",
        "Qwen/Qwen-Image-2.1-Turbo",
        "https://huggingface.co/Qwen/Qwen-Image-2.1-Turbo/blob/main/LICENSE",  # LICENSE, not LICENSE.md
    ),
    TINY_RANDOM: "apache-2.0",  # random weights made by this project (Apache-2.0): no generator's license applies
}


# The generator licences above that forbid commercial use of the images (the card says so in bold).
NON_COMMERCIAL = frozenset(
    {
        "sai-nc-community",
        "flux-1-dev-non-commercial-license",
        "flux-non-commercial-license",
        "qwen-research-license",
    }
)


def license_metadata(model_id: str) -> dict:
    """``license`` (and for an unknown generator ``license_name``/``license_link``, as the Hub asks for ``other``)."""
    if model_id in GENERATOR_LICENSES:
        known = GENERATOR_LICENSES[model_id]
        return {"license": known} if isinstance(known, str) else dict(known)
    slug = re.sub(r"[^a-z0-9.]+", "-", Path(model_id).name.lower()).strip("-") or "generator"
    link = {} if is_local_path(model_id) else {"license_link": f"https://huggingface.co/{model_id}"}
    return {"license": "other", "license_name": f"{slug}-license", **link}


def card_data(recipe: Recipe, features: datasets.Features, split_sizes: datasets.SplitDict) -> DatasetCardData:
    """YAML metadata the Hub and ``load_dataset`` understand: configs pointing at data/, features, splits,
    plus the generator's license and what the Hub shows about a synthetic dataset (tagged with its family)."""
    from builders.generators import card_tags  # the generation stack, which --push-only never loads

    return layout_card_data(
        recipe.name,
        features,
        split_sizes,
        tags=["synthetic", *card_tags(recipe), "text-to-image"],
        **license_metadata(recipe.model.id),
        task_ids=["multi-class-image-classification"],
        annotations_creators=["machine-generated"],
        source_datasets=["original"],
    )


def write_card(
    root: Path,
    recipe: Recipe,
    features: datasets.Features,
    split_sizes: datasets.SplitDict,
    summary: DatasetSummary,
    build_info: dict,
) -> DatasetCard:
    """Write ``README.md`` for the exported dataset at ``root`` (after data/ and the pictures)."""
    card = render_card(Path(root), recipe, card_data(recipe, features, split_sizes), summary, build_info)
    card.save(Path(root) / CARD)
    return card


def refreshed_card(root: Path, recipe: Recipe) -> DatasetCard:
    """The card's text re-rendered for ``recipe`` (say, a new Hub repo id) from the files of the dataset at
    ``root``, its YAML metadata kept as it is. Not saved: the caller decides where it goes."""
    root = Path(root)
    build_info = json.loads((root / BUILD_INFO).read_text(encoding="utf-8")) if (root / BUILD_INFO).exists() else {}
    return render_card(root, recipe, DatasetCard.load(root / CARD).data, read_summary(root), build_info)


def render_card(
    root: Path, recipe: Recipe, data: DatasetCardData, summary: DatasetSummary, build_info: dict
) -> DatasetCard:
    context = card_context(root, recipe, data, summary, build_info)
    return DatasetCard.from_template(data, template_path=str(TEMPLATE), **context)


# -- what the text says -------------------------------------------------------------------------------------------
def card_context(root: Path, recipe: Recipe, data: DatasetCardData, summary: DatasetSummary, build_info: dict) -> dict:
    info = _default_info(data)
    splits = [s["name"] for s in info["splits"]]
    features = stored_features(root, splits[0])
    return {
        "title": md(recipe.name),
        "name": recipe.name,
        "description": md(recipe.description.strip()),
        "total_rows": sum(s["num_examples"] for s in info["splits"]),
        "generator": model_link(recipe.model.id, recipe.model.revision),
        "scorers": [role for role, _ in _scorer_models(recipe)],
        "classes": [_class_entry(recipe, label, name, splits) for label, name in enumerate(recipe.class_names)],
        "prompt_disjoint": recipe.prompt_disjoint,
        "prompt_shares": ", ".join(f"{md(split)} {share:.3g}" for split, share in recipe.prompt_shares().items()),
        "pictures": _pictures(root, recipe),
        "summary_table": summary_table(summary),
        **_quality(root, summary),
        **_guidance(build_info),
        "models": [{"role": "generator", "model": model_link(recipe.model.id, recipe.model.revision)}]
        + [{"role": "LoRA (fused into the generator)", "model": model_link(lora.id)} for lora in recipe.model.loras]
        + [{"role": role, "model": model} for role, model in _scorer_models(recipe)],
        "parameters": _parameters(recipe, build_info),
        "columns": [(name, _type_name(feature)) for name, feature in features.items()],
        "repo_id": recipe.hub.repo_id or "USER/NAME",
        "runtime": _runtime(build_info),
        "versions": ", ".join(f"{k} {v}" for k, v in build_info.get("versions", {}).items()) or "unknown versions",
        **_recipe_block(recipe),
        "license_text": license_text(data),
        "formats": _formats(root, recipe),
    }


def _formats(root: Path, recipe: Recipe) -> list[str]:
    """What the card says of each format written beside Parquet: on the Hub, only those ``hub.formats`` uploads."""
    shown = published_formats(root)
    return [fmt.card_text for fmt in shown if not recipe.hub.repo_id or fmt.name in recipe.hub.formats]


def _recipe_block(recipe: Recipe) -> dict:
    """The recipe as YAML (its ``hub`` section blank: a rebuild must not push to this repo) and a code fence
    longer than any run of backticks in it."""
    text = recipe_to_yaml(recipe.without_hub())
    return {"recipe_yaml": text, "fence": "`" * max(3, 1 + max(map(len, re.findall("`+", text)), default=0))}


def _default_info(data: DatasetCardData) -> dict:
    info = data.dataset_info
    return next(i for i in info if i.get("config_name", "default") == "default") if isinstance(info, list) else info


def _scorer_models(recipe: Recipe) -> list[tuple[str, str]]:
    return [scorer.describe(settings) for scorer, settings in enabled_scorers(recipe.scoring)]


def _class_entry(recipe: Recipe, label: int, name: str, splits: list[str]) -> dict:
    spec = recipe.classes[name]
    by_split = {
        split: prompts_with_images(recipe, split, prompts)
        for split, prompts in recipe.split_prompts(name).items()
        if split in splits
    }
    if not recipe.prompt_disjoint:  # one list: the prompts any split's images use
        by_split = {"": list(dict.fromkeys(p for prompts in by_split.values() for p in prompts))}
    return {
        "label": label,
        "name": md(name),
        "label_text": md(recipe.label_text(name)),
        "imagenet": ", ".join(md(c) for c in spec.imagenet_classes),
        "negative_prompt": md(recipe.negative_prompt_of(name)),
        "guidance_scale": recipe.guidance_scale_of(name),
        "prompts": {
            md(split): {
                "shown": [f"“{md(p)}”" for p in prompts[:PROMPTS_SHOWN]],
                "more": max(0, len(prompts) - PROMPTS_SHOWN),
            }
            for split, prompts in by_split.items()
        },
    }


def _pictures(root: Path, recipe: Recipe) -> dict:
    samples = [
        {"path": samples_name(label), "alt": md(picture_alt(samples_name(label), recipe.class_names))}
        for label, name in enumerate(recipe.class_names)
        if (root / samples_name(label)).exists()
    ]
    histogram = HISTOGRAM_NAME if (root / HISTOGRAM_NAME).exists() else None
    return {
        "samples": samples,
        "histogram": histogram,
        "histogram_alt": md(picture_alt(HISTOGRAM_NAME, recipe.class_names)),
    }


def _parameters(recipe: Recipe, build_info: dict) -> list[tuple[str, str]]:
    g, m, o = recipe.generation, recipe.model, recipe.output
    safety = (
        "on; flagged images are "
        f"{f'regenerated (up to {m.max_regenerations} times)' if m.on_flagged == 'regenerate' else 'dropped'}"
        if m.safety_checker
        else "off"
    )
    generator = build_info.get("generator")
    if generator and m.safety_checker:
        safety += f" ({md(generator['safety_checker'])})"
    return [
        *(_generator_parameters(recipe, generator) if generator else []),
        ("seed", f"{recipe.seed} (every image's seed derives from it and the image's identity)"),
        ("scheduler", md(m.scheduler) if m.scheduler != "default" else "the model's own"),
        ("inference steps", str(g.num_inference_steps)),
        (
            "guidance scale",
            (
                f"a sweep over {', '.join(map(str, g.guidance_scale))}, cycled per image (each row records its own)"
                if isinstance(g.guidance_scale, list)
                else str(g.guidance_scale)
            )
            + (
                " (some classes override it, see above)"
                if any(c.guidance_scale is not None for c in recipe.classes.values())
                else ""
            ),
        ),
        ("image size", f"{g.width} × {g.height}"),
        ("images per prompt", str(g.images_per_prompt)),
        ("batch size", str(g.batch_size)),
        ("safety checker", safety),
        *_regenerations(recipe, build_info),
        ("device and dtype", _runtime(build_info)),
        ("image format", o.image_format + (f" (quality {o.quality})" if o.image_format != "png" else "")),
    ]


def _regenerations(recipe: Recipe, build_info: dict) -> list[tuple[str, str]]:
    """With ``filters.on_fail: regenerate``: per class, how many rows took how many tries."""
    if "filter_regenerations" not in build_info:
        return []
    most = recipe.filters.max_regenerations
    text = attempts_text(build_info["filter_regenerations"])
    return [
        (
            "score filters",
            f"failing rows regenerated up to {most} times, then dropped; rows by regenerations per class: {text}",
        )
    ]


def _quality(root: Path, summary: DatasetSummary) -> dict:
    """The card's quality section (``eval.quality``) and its loud warning when splits repeat each other."""
    picture = EMBEDDING_MAP_NAME if (root / EMBEDDING_MAP_NAME).exists() else None
    warning = leakage_warning(summary)
    return {"quality": quality_markdown(summary, picture), "leakage": md(warning) if warning else None}


def _guidance(build_info: dict) -> dict:
    """The card's real-image guidance section and its near-copy warning (none without reference images)."""
    report = build_info.get("reference_images")
    warnings = guidance_warnings(report) if report else []
    return {"references": card_rows(report) if report else [], "guidance_warnings": [md(w) for w in warnings]}


def _generator_parameters(recipe: Recipe, generator: dict) -> list[tuple[str, str]]:
    """The generator's family, what its guidance means, and the LoRAs fused into it (from build_info.json)."""
    rows = [
        ("model family", f"{md(generator['family'])} (`{generator['pipeline']}`)"),
        ("guidance", md(generator["guidance"])),
    ]
    if recipe.model.loras:
        loras = [
            f"{model_link(lora.id)}" + (f" ({md(lora.weight_name)})" if lora.weight_name else "") + f" × {lora.scale}"
            for lora in recipe.model.loras
        ]
        rows.append(("LoRAs (fused)", "; ".join(loras)))
    return rows


def _runtime(build_info: dict) -> str:
    fingerprint = build_info.get("fingerprint", {})
    if not fingerprint:
        return "not recorded"
    text = fingerprint.get("model.text_encoder_dtype")
    return f"{fingerprint['device_type']}, {fingerprint['model.dtype']}" + (f" (text encoders {text})" if text else "")


def _type_name(feature) -> str:
    if isinstance(feature, datasets.ClassLabel):
        return f"ClassLabel ({feature.num_classes} classes, see above)"
    if isinstance(feature, datasets.Value):
        return feature.dtype
    if isinstance(feature, datasets.List):
        return f"list of {_type_name(feature.feature)}"
    return type(feature).__name__


def license_text(data: DatasetCardData) -> str:
    """The card's words for the generator's licence: its name, where its terms are, and whether it forbids
    commercial use (``NON_COMMERCIAL``), which then holds for the dataset too."""
    name = data.get("license")
    if name != "other":
        return f"`{name}`"
    name, link = data.get("license_name"), data.get("license_link")
    text = f"`{name}`, [its terms]({link})" if link else f"`{name}`: see the generator's own terms"
    return text + ("; **non-commercial use only**" if name in NON_COMMERCIAL else "")


# -- counts and scores per split and class ------------------------------------------------------------------------
def summary_table(summary: DatasetSummary) -> str:
    """The scoring step's summary as a Markdown table."""
    header = ["split", "class", "generated", "kept", "dropped", *(stat.header for stat in STATS)]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    lines += [
        "| "
        + " | ".join(
            [
                md(c.split),
                md(c.class_name),
                str(c.generated),
                str(c.kept),
                str(c.dropped),
                *(format_stat(stat, c.scores.get(stat.key)) for stat in STATS),
            ]
        )
        + " |"
        for c in summary.classes
    ]
    return "\n".join(lines)
