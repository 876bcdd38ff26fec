"""What a run leaves to read: ``metrics.json``, a printed table, and PNG plots (curves, confusion matrices).

Plots are drawn on matplotlib ``Figure`` objects with the Agg canvas directly, so no GUI backend is ever
selected and importing this module does not change a notebook's backend. Class names are drawn in their own script
(``synthcore.fonts``: CJK included, never parsed as mathtext).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from synthcore.fonts import picture_style, shown

METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"


def write_metrics(directory: Path, metrics: dict) -> Path:
    path = directory / METRICS_FILE
    path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def epoch_line(record: dict, epochs: int) -> str:
    """One line per epoch: training loss/accuracy, then loss, accuracy and macro F1 of every eval split."""
    parts = [
        f"epoch {record['epoch']}/{epochs}  train loss {record['train']['loss']:.4f} acc "
        f"{record['train']['accuracy']:.3f}"
    ]
    parts += [
        f"{name} loss {m['loss']:.4f} acc {m['accuracy']:.3f} f1 {m['macro_f1']:.3f}"
        for name, m in record["eval"].items()
    ]
    return "  |  ".join(parts)


def final_table(final: dict[str, dict], classes: list[str]) -> str:
    """Per eval split: accuracy and macro F1, then each class's precision, recall and support."""
    width = max([len(c) for c in classes] + [len("macro F1"), 8])
    lines = []
    for split, m in final.items():
        lines += [
            f"== {split} ==",
            f"{'accuracy':<{width}}  {m['accuracy']:.4f}",
            f"{'macro F1':<{width}}  {m['macro_f1']:.4f}",
            f"{'class':<{width}}  precision  recall  support",
        ]
        lines += [
            f"{c:<{width}}  {m['precision'][c]:>9.4f}  {m['recall'][c]:>6.4f}  {m['support'][c]:>7d}" for c in classes
        ]
    return "\n".join(lines)


def plot_curves(directory: Path, epochs: list[dict]) -> Path:
    """Loss and accuracy per epoch: training and every eval split."""
    with picture_style():
        return _plot_curves(directory, epochs)


def _plot_curves(directory: Path, epochs: list[dict]) -> Path:
    figure = Figure(figsize=(11, 4), layout="constrained")
    FigureCanvasAgg(figure)
    x = [record["epoch"] for record in epochs]
    for axis, key in zip(figure.subplots(1, 2), ("loss", "accuracy")):
        axis.plot(x, [r["train"][key] for r in epochs], marker="o", label="train")
        for split in epochs[0]["eval"]:
            axis.plot(x, [r["eval"][split][key] for r in epochs], marker="o", label=shown(split))
        axis.set(xlabel="epoch", ylabel=key, title=key)
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.legend()
    path = directory / CURVES_FILE
    figure.savefig(path, dpi=100)
    return path


def plot_confusion(directory: Path, split: str, matrix: list[list[int]], classes: list[str]) -> Path:
    """The last epoch's confusion matrix of one eval split, counts in the cells, class names on the axes."""
    with picture_style():
        return _plot_confusion(directory, split, matrix, classes)


def _plot_confusion(directory: Path, split: str, matrix: list[list[int]], classes: list[str]) -> Path:
    figure = Figure(figsize=(2 + 0.6 * len(classes), 1.5 + 0.6 * len(classes)), layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis)
    ticks = range(len(classes))
    axis.set(
        xticks=ticks,
        yticks=ticks,
        xticklabels=[shown(c) for c in classes],
        yticklabels=[shown(c) for c in classes],
        xlabel="predicted",
        ylabel="true",
        title=f"confusion matrix: {shown(split)}",
    )
    dark = max(max(values) for values in matrix) / 2
    for row, values in enumerate(matrix):
        for column, count in enumerate(values):
            axis.text(column, row, str(count), ha="center", va="center", color="white" if count > dark else "black")
    path = directory / f"confusion_{re.sub(r'[^A-Za-z0-9_.-]', '_', split)}.png"
    figure.savefig(path, dpi=100)
    return path
