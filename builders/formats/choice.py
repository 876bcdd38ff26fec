"""The recipe's ``formats`` key: names, each optionally with its options, resolved to typed choices once.

formats: [parquet, imagefolder, {webdataset: {max_samples: 1000}}]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, ValidationError

from builders.formats.base import ExportFormat, FormatOptions
from builders.formats.registry import FORMATS


@dataclass(frozen=True)
class FormatChoice:
    name: str
    options: FormatOptions

    @property
    def format(self) -> ExportFormat:
        return FORMATS[self.name]()


def _known(name: Any, where: str) -> str:
    if not isinstance(name, str) or name not in FORMATS:
        raise ValueError(f"{where}: unknown format {name!r}; the formats are {', '.join(FORMATS)}")
    return name


def _choice(item: Any, where: str) -> FormatChoice:
    """A name, or a one-key mapping of a name to its options."""
    if isinstance(item, dict) and len(item) == 1:
        ((name, options),) = item.items()
    else:
        name, options = item, {}
    name = _known(name, where)
    try:
        return FormatChoice(name, FORMATS[name].Options.model_validate(options or {}))
    except ValidationError as err:
        problems = "; ".join(f"{where}.{'.'.join(map(str, (name, *e['loc'])))}: {e['msg']}" for e in err.errors())
        raise ValueError(problems) from None


def parse_formats(value: Any) -> tuple[FormatChoice, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of format names (e.g. [parquet, imagefolder])")
    choices = tuple(_choice(item, f"[{i}]") for i, item in enumerate(value))
    if len({c.name for c in choices}) != len(choices):
        raise ValueError("a format is named twice")
    return choices


def dump_formats(choices: tuple[FormatChoice, ...]) -> list:
    """Back to the recipe's form: a name, or a name with the options that differ from their defaults."""
    return [{c.name: options} if (options := c.options.model_dump(exclude_defaults=True)) else c.name for c in choices]


def parse_names(value: Any) -> tuple[str, ...]:
    """``hub.formats``: format names only."""
    if not isinstance(value, (list, tuple)):
        raise ValueError("must be a list of format names (e.g. [imagefolder])")
    return tuple(_known(name, f"[{i}]") for i, name in enumerate(value))


def chosen(current: Sequence[FormatChoice], names: str) -> tuple[FormatChoice, ...]:
    """``--formats a,b``: those formats, with the options the recipe gives them (else their defaults)."""
    options = {c.name: c.options for c in current}
    listed = [name.strip() for name in names.split(",") if name.strip()]
    if not listed:
        raise ValueError("--formats: give at least one format name (e.g. --formats parquet,imagefolder)")
    return tuple(
        FormatChoice(name, options.get(name) or FORMATS[name].Options())
        for name in (_known(name, "--formats") for name in dict.fromkeys(listed))
    )


Formats = Annotated[tuple[FormatChoice, ...], PlainValidator(parse_formats), PlainSerializer(dump_formats)]
FormatNames = Annotated[tuple[str, ...], PlainValidator(parse_names), PlainSerializer(list)]
DEFAULT_FORMATS = (FormatChoice("parquet", FORMATS["parquet"].Options()),)
