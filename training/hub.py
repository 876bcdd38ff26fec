"""The model card (always written beside the classifier) and the optional push of the output folder to the Hub.

A failed push (no token, no network, no permission) raises ``PushError`` naming the repo and the cause; the
local outputs, written before, are left as they are.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from synthcore.hub import push_folder
from synthcore.model_refs import is_local_path
from training.config import TrainConfig

CARD_FILE = "README.md"

_TEMPLATE = """---
{{ card_data }}
---

# ResNet18 {{ mode_name }} on {{ dataset_link }}

A ResNet18 (backbone weights `{{ backbone }}`) {{ mode_text }}, trained on the `{{ train_split }}` split
for {{ epochs }} epochs with SGD (lr {{ lr }}, momentum {{ momentum }}) and cross-entropy. Classes: {{ classes }}.

## Results (last epoch)

| split | accuracy | macro F1 |
|---|---|---|
{% for split, m in final.items() %}| {{ split }} | {{ "%.4f"|format(m.accuracy) }} | {{ "%.4f"|format(m.macro_f1) }} |
{% endfor %}
Per-class precision/recall and confusion matrices are in `metrics.json`; curves in `curves.png`.

## Use

With the `training` package of the synthdata project:

```python
from training import load_classifier
model = load_classifier("path/to/this/folder")
model.predict([image])   # -> list of class names
```
"""


def write_model_card(directory: Path, config: TrainConfig, classes: list[str], final: dict) -> ModelCard:
    dataset_is_hub = not is_local_path(config.dataset)
    data = ModelCardData(
        library_name="pytorch",
        pipeline_tag="image-classification",
        tags=[
            "image-classification",
            "resnet18",
            "linear-probe" if config.mode == "probe" else "fine-tuned",
            "synthetic-data",
        ],
        datasets=[config.dataset] if dataset_is_hub else None,
        metrics=["accuracy", "f1"],
    )
    card = ModelCard.from_template(
        data,
        template_str=_TEMPLATE,
        mode_name="linear probe" if config.mode == "probe" else "fine-tuned",
        mode_text="with frozen features and a trained linear head"
        if config.mode == "probe"
        else "fine-tuned end to end",
        dataset_link=f"[{config.dataset}](https://huggingface.co/datasets/{config.dataset})"
        if dataset_is_hub
        else f"the local dataset `{Path(config.dataset).name}`",
        backbone=config.backbone_weights,
        train_split=config.train_split,
        epochs=config.epochs,
        lr=config.lr,
        momentum=config.momentum,
        classes=", ".join(classes),
        final=final,
    )
    card.save(directory / CARD_FILE)
    return card


def push_classifier(directory: Path, repo_id: str, private: bool) -> str:
    """Create the model repo if needed and upload the output folder; returns the repo URL."""
    return push_folder(
        directory,
        repo_id,
        repo_type="model",
        private=private,
        commit_message="Upload ResNet18 classifier trained with synthdata",
    )
