"""``python -m eval --compare A B ...``: which of several datasets of the same classes is the better data.

Typically one recipe built with two generators (``build.py RECIPE model.id=...``), but any image-classification
datasets with the same class names do. Each dataset is scored exactly as ``python -m eval DATASET`` scores it, with
the same scorers and options for all (so the figures are comparable), into ``<output-dir>/scored/<name>/``; its
``summary.json`` gives the figures: CLIP alignment (p(true), CLIPScore), diversity (Vendi, mean pairwise cosine
distance), duplicates and, with ``--reference``, CMMD to real images (``eval.quality``). Written to the output
directory: ``compare.json`` (per dataset, every figure overall and per split and class), ``compare.md`` (the
table and one picture per class: a row of sample images per dataset) and a table on the console.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import datasets
import pyarrow.parquet as pq

from eval import standalone
from eval.pictures import PICTURES_DIR, Grid, GridRow, class_title, draw_grid, read_scores
from eval.scorers.clip import TRUE_PROB
from eval.summary import ClassSummary, DatasetSummary, display_width, pad, read_summary
from eval.tallies import STATS, image_column, split_rows
from synthcore.cardmeta import md
from synthcore.fonts import picture_style
from synthcore.layout import hub_files
from synthcore.outdir import Tool, check, claimed

log = logging.getLogger("synthdata.eval")

COMPARE_FILE = "compare.json"
COMPARE_MD = "compare.md"
SCORED_DIR = "scored"
PROBES_DIR = "probes"
COMPARE_OUTPUT = Tool("python -m eval --compare", (COMPARE_FILE, COMPARE_MD, PICTURES_DIR, SCORED_DIR, PROBES_DIR))
OVERALL = "overall"


@dataclass(frozen=True)
class Figure:
    """One compared figure: its key in ``compare.json``, its column header and its number format."""

    key: str
    header: str
    fmt: str


FIGURES: tuple[Figure, ...] = (
    Figure("images", "images", "d"),
    *(Figure(stat.key, stat.header, stat.fmt) for stat in STATS),
    Figure("exact_duplicates", "exact dup", "d"),
    Figure("near_duplicates", "near dup", "d"),
    Figure("leaked", "leaked", "d"),
    Figure("mean_cosine_distance", "cos dist", ".3f"),
    Figure("vendi", "Vendi", ".1f"),
    Figure("cmmd", "CMMD", ".3f"),
    Figure("probe_accuracy", "probe acc", ".3f"),
    Figure("probe_macro_f1", "probe F1", ".3f"),
)
METRICS_FILE = "metrics.json"  # what python -m training writes in its output directory
MEAN_STATS = [stat.key for stat in STATS if stat.reduce != "median"]  # exact overall as row-weighted means


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The comparison's options (every one checked), and the rest: ``python -m eval``'s scoring options, given
    to it for each dataset alike."""
    parser = comparison_parser()
    standalone.add_scoring_options(parser)
    args = parser.parse_args(argv)
    return args, comparison_parser().parse_known_args(argv)[1]


def comparison_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval --compare",
        description="Compare datasets of the same classes (e.g. one recipe built with different models): each is "
        "scored as `python -m eval` scores it, with the same options; writes compare.json, compare.md (with "
        "pictures) and the scored datasets to --output-dir, and prints the table.",
    )
    parser.add_argument("--compare", nargs="*", required=True, metavar="DATASET", help="datasets (dirs or Hub ids)")
    parser.add_argument("--output-dir", required=True, help="where compare.json, compare.md and pictures go")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier comparison there")
    parser.add_argument(
        "--probe",
        action="store_true",
        help="also train a linear probe on each dataset (python -m training) and report its accuracy on --eval-dataset",
    )
    parser.add_argument("--eval-dataset", help="real images of the same classes the probes are evaluated on")
    parser.add_argument(
        "--probe-args",
        default="",
        metavar='"OPTIONS"',
        help='more options of python -m training for every probe, e.g. --probe-args="--epochs 20"',
    )
    return parser


def dataset_names(sources: list[str]) -> list[str]:
    """A short unique name per dataset (its directory or Hub name; numbered where two share one)."""
    names = [Path(source.rstrip("/")).name or source for source in sources]
    return [name if names.count(name) == 1 else f"{i + 1}-{name}" for i, name in enumerate(names)]


def scoring_args(source: str, options: list[str], out: Path | None = None) -> argparse.Namespace:
    """``python -m eval``'s arguments for one dataset (argparse refuses unknown options, exit 2)."""
    return standalone.parse_args([source, *options, *(["--output-dir", str(out)] if out else [])])


def class_names_of(source: str, options: list[str]) -> list[str]:
    """The dataset's class names (any split's ClassLabel: ``python -m eval`` checks the rest)."""
    args = scoring_args(source, options)
    dataset = standalone.load_source(source)
    label = next(iter(dataset.values())).features.get(args.label_column)
    if isinstance(label, datasets.ClassLabel):
        return label.names
    columns = standalone.Columns(args.image_column, args.label_column, args.prompt_column)
    return standalone.check_columns(dataset, columns, source)  # raises the error naming the column


def check_same_classes(sources: list[str], options: list[str]) -> list[str]:
    """The shared class names; datasets of different classes cannot be compared class by class."""
    first = class_names_of(sources[0], options)
    for source in sources[1:]:
        names = class_names_of(source, options)
        if set(names) != set(first):
            raise standalone.InputError(
                f"the datasets have different classes: {sources[0]} has {first}, {source} has {names}; compare "
                "datasets of the same classes (the order may differ)"
            )
    return first


def class_figures(c: ClassSummary) -> dict:
    """One split and class of a dataset's summary as flat figures (None where not measured)."""
    duplicates, diversity = c.duplicates or {}, c.diversity or {}
    exact, near = duplicates.get("exact") or {}, duplicates.get("near") or {}
    leaked = [(duplicates.get(kind) or {}).get("across_splits") for kind in ("exact", "near")]
    return {
        "split": c.split,
        "class": c.class_name,
        "images": c.generated,
        **{stat.key: c.scores.get(stat.key) for stat in STATS},
        "exact_duplicates": exact.get("within_split"),
        "near_duplicates": near.get("within_split"),
        "leaked": sum(n for n in leaked if n is not None) if leaked[0] is not None else None,
        "mean_cosine_distance": diversity.get("mean_cosine_distance"),
        "vendi": diversity.get("vendi"),
        "cmmd": c.cmmd,
    }


def overall_figures(summary: DatasetSummary, classes: list[dict]) -> dict:
    """The dataset's figures: means and shares over every image, duplicates and CMMD as the quality pass counted
    them over the whole dataset, diversity as the mean over its splits and classes (a medians' median is not
    exact: none is given)."""
    figures = {"images": sum(c["images"] for c in classes)}
    for key in MEAN_STATS:
        weighted = [(c[key], c["images"]) for c in classes if c[key] is not None and c["images"]]
        total = sum(n for _, n in weighted)
        figures[key] = sum(v * n for v, n in weighted) / total if total else None
    duplicates = summary.duplicates or {}
    figures["exact_duplicates"] = (duplicates.get("exact") or {}).get("within_split")
    figures["near_duplicates"] = (duplicates.get("near") or {}).get("within_split")
    leaked = summary.leaked
    figures["leaked"] = sum(leaked.values()) if summary.duplicates is not None else None
    for key in ("mean_cosine_distance", "vendi"):
        values = [c[key] for c in classes if c[key] is not None]
        figures[key] = sum(values) / len(values) if values else None
    figures["cmmd"] = (summary.cmmd or {}).get(OVERALL)
    return figures


def dataset_report(source: str, scored: Path, name: str) -> dict:
    """A dataset's part of ``compare.json``: where it came from, where its scored copy is, and its figures
    overall and per split and class."""
    summary = read_summary(scored)
    classes = [class_figures(c) for c in summary.classes]
    return {
        "source": source,
        "scored": f"{SCORED_DIR}/{name}",
        OVERALL: overall_figures(summary, classes),
        "classes": classes,
    }


def shown_figures(report: dict) -> list[Figure]:
    """The figures measured for at least one dataset (a disabled scorer's or CMMD without a reference are not)."""
    rows = [row for data in report.values() for row in [data[OVERALL], *data["classes"]]]
    return [f for f in FIGURES if any(row.get(f.key) is not None for row in rows)]


def table_rows(report: dict) -> list[tuple[str, ...]]:
    """Header, then each dataset overall, then each class and split with one row per dataset."""
    figures = shown_figures(report)
    rows = [("class", "split", "dataset", *(f.header for f in figures))]
    rows += [(OVERALL, "", name, *cells(data[OVERALL], figures)) for name, data in report.items()]
    keys = dict.fromkeys((c["class"], c["split"]) for data in report.values() for c in data["classes"])
    for class_name, split in keys:
        for name, data in report.items():
            row = next((c for c in data["classes"] if (c["class"], c["split"]) == (class_name, split)), None)
            rows.append((class_name, split, name, *(cells(row, figures) if row else ["-"] * len(figures))))
    return rows


def cells(figures_of: dict, figures: list[Figure]) -> list[str]:
    return ["-" if (v := figures_of.get(f.key)) is None else format(v, f.fmt) for f in figures]


def format_compare_table(report: dict) -> str:
    rows = table_rows(report)
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(pad(cell, w, left=i < 3) for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows
    )


def compare_markdown(report: dict, pictures: list[tuple[str, str]]) -> str:
    """``compare.md``: what was compared, the table, and a sample picture per class."""
    rows = [[md(cell) for cell in row] for row in table_rows(report)]
    table = ["| " + " | ".join(rows[0]) + " |", "|---|---|---|" + "---:|" * (len(rows[0]) - 3)]
    table += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    sources = "\n".join(f"- **{md(name)}**: `{md(data['source'])}`" for name, data in report.items())
    images = "\n\n".join(f"![sample images of {md(name)}, one row per dataset]({path})" for name, path in pictures)
    return (
        f"# Comparison of {len(report)} datasets\n\n{sources}\n\n"
        "Each dataset was scored by `python -m eval` with the same scorers (its scored copy is under "
        f"`{SCORED_DIR}/`). *P(true)*: CLIP's zero-shot probability of the true class (higher: the images show "
        "their class); *CLIPScore*: image-text alignment; *exact/near dup*: images repeating an earlier one of "
        "their split and class; *leaked*: repeating one of an earlier split; *cos dist* and *Vendi*: diversity "
        "of the CLIP embeddings (higher: more varied; overall, the mean over splits and classes); *CMMD*: "
        "distance to the reference's real images (lower: closer).\n\n"
        + "\n".join(table)
        + probe_markdown(report)
        + f"\n\n## Samples\n\n{images}\n"
    )


def probe_markdown(report: dict) -> str:
    """With ``--probe``: each class's recall on the eval dataset, per dataset (the probe's accuracy on the
    real images of that class)."""
    probes = {name: data["probe"] for name, data in report.items() if "probe" in data}
    if not probes:
        return ""
    first = next(iter(probes.values()))
    lines = [f"| class | {' | '.join(md(name) for name in probes)} |", "|---|" + "---:|" * len(probes)]
    lines += [
        f"| {md(c)} | "
        + " | ".join(cells({"r": p["recall"].get(c)}, [Figure("r", "", ".3f")])[0] for p in probes.values())
        + " |"
        for c in first["recall"]
    ]
    return (
        f"\n\n## Linear probe on `{md(first['eval_dataset'])}`\n\nA ResNet18 linear probe trained on each dataset "
        "(`python -m training`; its metrics under `probes/`), measured on the eval dataset: *probe acc* and *probe "
        "F1* above; here each class's recall (the share of its real images the probe gets right). Higher is better "
        "data.\n\n" + "\n".join(lines)
    )


def first_samples(scored: Path, label_column: str) -> dict[int, list[dict]]:
    """Each class's first images (and CLIP's p(true)) in the dataset's first split that has any."""
    files = hub_files(scored / "data")
    features = datasets.Features.from_arrow_schema(pq.read_schema(next(iter(files.values()))[0]))
    scores = read_scores(split_rows(scored, list(files)), features, label_column)
    samples: dict[int, list[dict]] = {}
    for by_class in scores.samples.values():
        for label, rows in by_class.items():
            samples.setdefault(label, [{"image": r[image_column(features)], "p": r.get(TRUE_PROB)} for r in rows])
    return samples


def write_grids(stage: Path, scored: dict[str, Path], class_names: list[str], label_column: str) -> list:
    """One picture per class: a row of sample images per dataset; returns (class, relative path) pairs."""
    samples = {name: first_samples(path, label_column) for name, path in scored.items()}
    indices = {name: read_summary(path).classes for name, path in scored.items()}
    (stage / PICTURES_DIR).mkdir()
    written = []
    with picture_style():
        for label, class_name in enumerate(class_names):
            rows = []
            for name in scored:
                theirs = [c.class_name for c in indices[name]]
                rows_of = samples[name].get(list(dict.fromkeys(theirs)).index(class_name), [])
                captions = [f"p(true) = {r['p']:.2f}" if r["p"] is not None else "" for r in rows_of]
                note = None if rows_of else "no image of this class"
                rows.append(GridRow(name, [r["image"] for r in rows_of], captions, note))
            path = f"{PICTURES_DIR}/compare-class-{label:03d}.png"
            draw_grid(Grid(class_title(label, class_name), rows)).save(stage / path, format="PNG")
            written.append((class_name, path))
    return written


def run_probe(dataset: Path, out: Path, args: argparse.Namespace, columns: argparse.Namespace) -> dict:
    """``python -m training`` on one (scored) dataset, evaluated on ``--eval-dataset``: its accuracy, macro F1
    and per-class recall there (the split's figures, or their support-weighted means over several splits). A
    subprocess: eval/ never imports training/."""
    command = [sys.executable, "-m", "training", "--dataset", str(dataset), "--output-dir", str(out)]
    command += ["--eval-dataset", args.eval_dataset, "--image-column", columns.image_column]
    command += ["--label-column", columns.label_column, *shlex.split(args.probe_args)]
    log.info("probe: %s", shlex.join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise standalone.InputError(
            f"the probe of {dataset.name} failed (python -m training exit {done.returncode}): "
            f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'no message'}"
        )
    final = json.loads((out / METRICS_FILE).read_text(encoding="utf-8"))["final"]
    theirs = [m for split, m in final.items() if split.startswith(f"{Path(args.eval_dataset.rstrip('/')).name}/")]
    support = [sum(m["support"].values()) for m in theirs]
    return {
        "eval_dataset": args.eval_dataset,
        "metrics": f"{PROBES_DIR}/{dataset.name}/{METRICS_FILE}",
        **{key: weighted([m[key] for m in theirs], support) for key in ("accuracy", "macro_f1")},
        "recall": {c: weighted([m["recall"][c] for m in theirs], support) for c in theirs[0]["recall"]},
    }


def weighted(values: list[float], weights: list[int]) -> float | None:
    return sum(v * w for v, w in zip(values, weights)) / sum(weights) if sum(weights) else None


def run_comparison(args: argparse.Namespace, options: list[str]) -> Path:
    if len(args.compare) < 2:
        raise standalone.InputError(f"--compare needs two datasets or more, got {args.compare}")
    if args.probe != bool(args.eval_dataset):
        raise standalone.InputError("--probe and --eval-dataset go together: the probes are measured on that dataset")
    out = check(args.output_dir, COMPARE_OUTPUT, replace=args.overwrite)
    class_names = check_same_classes(args.compare, options)
    label_column = scoring_args(args.compare[0], options).label_column
    names = dataset_names(args.compare)
    with claimed(out, COMPARE_OUTPUT, replace=args.overwrite) as owned, owned.staging() as stage:
        scored = {}
        for name, source in zip(names, args.compare):
            log.info("scoring %s as %s", source, name)
            with contextlib.redirect_stdout(sys.stderr):  # its table is in the log; ours alone on stdout
                scored[name] = standalone.score_dataset(scoring_args(source, options, stage / SCORED_DIR / name))
        report = {name: dataset_report(source, scored[name], name) for name, source in zip(names, args.compare)}
        if args.probe:
            columns = scoring_args(args.compare[0], options)
            for name, path in scored.items():
                probe = run_probe(path, stage / PROBES_DIR / name, args, columns)
                report[name]["probe"] = probe
                report[name][OVERALL] |= {"probe_accuracy": probe["accuracy"], "probe_macro_f1": probe["macro_f1"]}
        (stage / COMPARE_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        pictures = write_grids(stage, scored, class_names, label_column)
        (stage / COMPARE_MD).write_text(compare_markdown(report, pictures), encoding="utf-8")
        owned.publish(stage, whole=True)
    print(format_compare_table(report))
    return out


def main(argv: list[str] | None = None) -> int:
    args, options = parse_args(argv)
    return standalone.run_command(
        lambda: run_comparison(args, options), Path(args.output_dir), "comparison (compare.md, compare.json) written to"
    )
