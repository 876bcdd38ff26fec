"""Reading a YAML settings file (a recipe) safely and within bounds, and reporting every problem with its key path.

A small file must not be able to exhaust memory or CPU before any error: the file is capped in size; aliases are
counted as they would expand, and nesting is capped, before anything is constructed; YAML's safe loader never
constructs Python objects; duplicate keys are refused; YAML 1.1 merge keys (``<<: *base``) work. UTF-8 (with or
without a BOM) and UTF-16 with a BOM are read; any other encoding is refused with the file's name. Messages never
quote a huge input whole.
"""

from __future__ import annotations

import codecs
import io
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

MAX_FILE_BYTES = 1 << 20  # 1 MiB: a recipe of thousands of prompts is far smaller
MAX_EXPANDED_NODES = 200_000  # values after alias expansion
MAX_DEPTH = 64
MAX_QUOTED = 80  # characters of an offending value quoted in a message

# Problems a validator finds together are joined with this, and split again into separate lines.
PROBLEM_JOINER = "\n<problem>"


class ConfigFileError(ValueError):
    """A settings file that cannot be used, with every problem found and where it is."""

    kind = "settings file"

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{source}: invalid {self.kind} ({len(problems)} problem{'s' * (len(problems) > 1)}):\n{lines}"
        )


def short_repr(value: Any) -> str:
    """``repr`` of a value, cut to a readable length."""
    text = (
        repr(value)
        if not isinstance(value, (dict, list)) or len(value) < 50
        else f"<{type(value).__name__} of {len(value)} items>"
    )
    return text if len(text) <= MAX_QUOTED else f"{text[:MAX_QUOTED]}… ({len(text)} characters)"


def read_text(path: Path, error: type[ConfigFileError]) -> str:
    """The file's text: at most ``MAX_FILE_BYTES``, UTF-8 (BOM or not) or UTF-16 with a BOM."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise error(str(path), [f"cannot read the {error.kind}: {err.strerror or err}"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise error(str(path), [f"the file is larger than {MAX_FILE_BYTES // 1024} KiB; a recipe is a few KiB of YAML"])
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        raise error(
            str(path),
            [
                f"the file is not UTF-8 (nor UTF-16 with a byte-order mark): {err.reason} at byte {err.start}; "
                "save it as UTF-8"
            ],
        ) from None


class _BoundedSafeLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses duplicate keys."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        if isinstance(key, (dict, list)):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {short_repr(key)}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_BoundedSafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _check_size(root: yaml.Node) -> None:
    """Count the values the document expands to (aliases counted at every use) and its depth, without expanding."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else (list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        )
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        sizes[id(node)] = 1 + sum(sizes.get(id(child), 1) for child in children)
        depths[id(node)] = 1 + max((depths.get(id(child), 1) for child in children), default=0)
        if sizes[id(node)] > MAX_EXPANDED_NODES:
            raise ValueError(
                f"the document expands to more than {MAX_EXPANDED_NODES} values (aliases used many times?)"
            )
        if depths[id(node)] > MAX_DEPTH:
            raise ValueError(f"the document nests deeper than {MAX_DEPTH} levels")


def load_yaml(text: str, source: str, error: type[ConfigFileError]) -> Any:
    """The document's data, or one ``error`` saying why not (malformed, too big once expanded, too deep)."""
    stream = io.StringIO(text)
    stream.name = source  # so YAML's messages name the file
    loader = _BoundedSafeLoader(stream)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise error(source, [f"malformed YAML: {err}"]) from None
    except RecursionError:
        raise error(source, [f"the document nests deeper than {MAX_DEPTH} levels"]) from None
    except ValueError as err:
        raise error(source, [str(err)]) from None
    finally:
        loader.dispose()


def validate(model: type[BaseModel], data: Any, source: str, error: type[ConfigFileError], what: str) -> BaseModel:
    """``data`` validated as ``model``, or one ``error`` listing every problem with its key path."""
    if not isinstance(data, dict):
        raise error(source, [f"expected a mapping of {what} keys at the top level, got {type(data).__name__}"])
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise error(source, format_validation_errors(err)) from None


def format_validation_errors(err: ValidationError) -> list[str]:
    problems = []
    for item in err.errors():
        path = key_path(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the recipe reference in README.md)"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif "input" in item and item["type"] not in ("value_error", "assertion_error"):
            message = f"{message} (got {short_repr(item['input'])})"
        for part in message.split(PROBLEM_JOINER):
            problems.append(f"{path}: {part}" if path and not part.startswith(("classes.", "templates[")) else part)
    return problems


def key_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path
