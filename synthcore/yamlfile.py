"""Reading a YAML settings file (a recipe) safely and within bounds, and reporting every problem with its key path.

A small file must not be able to exhaust memory or CPU before any error: the file is capped in size; one streaming
pass over the parser's events counts the values and characters the document expands to (every alias counted at
each use) and its depth, before any node is composed or constructed; YAML's safe loader never constructs Python
objects; duplicate keys are refused; YAML 1.1 merge keys (``<<: *base``) work. UTF-8 (with or without a BOM) and
UTF-16 with a BOM are read; any other encoding is refused with the file's name. Messages never quote a huge input
whole, and list at most ``MAX_PROBLEMS`` problems.
"""

from __future__ import annotations

import codecs
import io
import reprlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

MAX_FILE_BYTES = 1 << 20  # 1 MiB: a recipe of thousands of prompts is far smaller
MAX_EXPANDED_NODES = 200_000  # values after alias expansion
MAX_EXPANDED_CHARS = 16 << 20  # characters of all scalars after alias expansion
MAX_DEPTH = 64
MAX_QUOTED = 80  # characters of an offending value quoted in a message
MAX_KEY_QUOTED = 40  # characters of one key quoted in a key path
MAX_PROBLEMS = 50  # problems listed in one message (the rest are counted)

# Problems a validator finds together are joined with this, and split again into separate lines.
PROBLEM_JOINER = "\n<problem>"

# libyaml's parser when PyYAML has it (an order of magnitude faster on a 1 MiB file), else the pure-Python one.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigFileError(ValueError):
    """A settings file that cannot be used, with every problem found and where it is."""

    kind = "settings file"

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = [f"  - {p}" for p in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            lines.append(f"  … and {len(problems) - MAX_PROBLEMS} more problems")
        count = f"{len(problems)} problem{'s' * (len(problems) > 1)}"
        super().__init__(f"{source}: invalid {self.kind} ({count}):\n" + "\n".join(lines))


def _bounded_repr() -> reprlib.Repr:
    bounded = reprlib.Repr()
    bounded.maxstring = bounded.maxother = MAX_QUOTED
    bounded.maxlist = bounded.maxtuple = bounded.maxdict = bounded.maxset = 6
    bounded.maxlevel = 2
    return bounded


_REPR = _bounded_repr()


def short_repr(value: Any) -> str:
    """``repr`` of a value, cut to a readable length without ever building the whole repr of a huge value."""
    text = _REPR.repr(value)
    if isinstance(value, str) and len(value) > MAX_QUOTED:
        text += f" ({len(value)} characters)"
    return text if len(text) <= 2 * MAX_QUOTED else f"{text[: 2 * MAX_QUOTED]}…"


def read_text(path: Path, error: type[ConfigFileError]) -> str:
    """The file's text: at most ``MAX_FILE_BYTES``, UTF-8 (BOM or not) or UTF-16 with a BOM."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise error(str(path), [f"cannot read the {error.kind}: {err.strerror or err}"]) from None
    return decode_text(data, str(path), error)


def decode_text(data: bytes, source: str, error: type[ConfigFileError]) -> str:
    """The text of a file's bytes (read from disk or a store, at most ``MAX_FILE_BYTES + 1`` of them): at most
    ``MAX_FILE_BYTES``, UTF-8 (BOM or not) or UTF-16 with a BOM; ``error`` naming ``source`` otherwise."""
    if len(data) > MAX_FILE_BYTES:
        raise error(source, [f"the file is larger than {MAX_FILE_BYTES // 1024} KiB; a recipe is a few KiB of YAML"])
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise error(source, ["the file is UTF-32; save it as UTF-8"])
    encoding = "utf-16" if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise error(
            source,
            [
                f"the file is not UTF-8 (nor UTF-16 with a byte-order mark): {err.reason} at byte {err.start}; "
                "save it as UTF-8"
            ],
        ) from None
    if "\x00" in text:
        raise error(
            source,
            ["the file holds NUL characters: not a text file, or UTF-16 without a byte-order mark; save it as UTF-8"],
        )
    return text


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _BoundedSafeLoader(_SafeLoader):
    """YAML's safe loader that refuses duplicate keys and merges ``<<`` keys as YAML 1.1 says."""

    def __init__(self, stream: io.StringIO):
        super().__init__(stream)
        self._flattened: set[int] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Replace the mapping's ``<<`` keys by the pairs they merge, once per mapping, before it is constructed.

        Its own keys win, then the merged mappings in the order listed (YAML 1.1; PyYAML's own order depends on
        whether two key strings are the same object). Its own keys must be plain values, each given once.
        """
        if id(node) in self._flattened:
            return
        self._flattened.add(id(node))
        own, merged, seen = [], [], set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged += self._merged_mappings(node, value_node)
                continue
            if key_node.tag == "tag:yaml.org,2002:value":
                key_node.tag = "tag:yaml.org,2002:str"
            key = self.construct_object(key_node)
            if isinstance(key, (dict, list)):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {short_repr(key)}", key_node.start_mark
                )
            seen.add(key)
            own.append((key_node, value_node))
        # A later pair overrides an earlier one when constructed: the lowest precedence goes first.
        node.value = [pair for source in reversed(merged) for pair in source.value] + own

    def _merged_mappings(self, node: yaml.MappingNode, value: yaml.Node) -> list[yaml.MappingNode]:
        sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"'<<' merges a mapping or a list of mappings, not a {source.id}",
                    source.start_mark,
                )
            self.flatten_mapping(source)
        return sources


class _TooBig(ValueError):
    """The document would expand past a bound."""


def _check_size(text: str, source: str) -> None:
    """Count, over the parser's events alone, the values and characters the document expands to (an alias counts
    as everything its anchor holds, at every use) and its depth; stop at the first bound crossed. Nothing is
    composed or constructed, so neither an alias bomb nor deep nesting costs memory or recursion here."""
    anchored: dict[str, tuple[int, int, int]] = {}  # anchor -> (values, characters, depth) of what it names
    open_nodes: list[list] = []  # [values, characters, depth, anchor] of each collection being read
    totals = [0, 0]

    def count(values: int, characters: int, depth: int) -> None:
        totals[0] += values
        totals[1] += characters
        if totals[0] > MAX_EXPANDED_NODES:
            raise _TooBig(f"the document expands to more than {MAX_EXPANDED_NODES} values (aliases used many times?)")
        if totals[1] > MAX_EXPANDED_CHARS:
            raise _TooBig(
                f"the document expands to more than {MAX_EXPANDED_CHARS >> 20} Mi characters (aliases used many times?)"
            )
        if len(open_nodes) + depth > MAX_DEPTH:
            raise _TooBig(f"the document nests deeper than {MAX_DEPTH} levels")

    def absorb(values: int, characters: int, depth: int) -> None:
        """Add a finished value to the collection that holds it."""
        if open_nodes:
            parent = open_nodes[-1]
            parent[0] += values
            parent[1] += characters
            parent[2] = max(parent[2], 1 + depth)

    stream = io.StringIO(text)
    stream.name = source
    for event in yaml.parse(stream, Loader=_SafeLoader):
        if isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
            size = (1, len(event.value), 0) if isinstance(event, yaml.ScalarEvent) else anchored.get(event.anchor)
            size = size or (1, 0, 0)  # an undefined alias: the composer reports it
            count(*size)
            absorb(*size)
            if event.anchor and isinstance(event, yaml.ScalarEvent):
                anchored[event.anchor] = size
        elif isinstance(event, yaml.CollectionStartEvent):
            count(1, 0, 1)
            open_nodes.append([1, 0, 1, event.anchor])
        elif isinstance(event, yaml.CollectionEndEvent):
            values, characters, depth, anchor = open_nodes.pop()
            absorb(values, characters, depth)
            if anchor:
                anchored[anchor] = (values, characters, depth)


def load_yaml(text: str, source: str, error: type[ConfigFileError]) -> Any:
    """The document's data, or one ``error`` saying why not (malformed, too big once expanded, too deep)."""
    try:
        _check_size(text, source)
        stream = io.StringIO(text)
        stream.name = source  # so YAML's messages name the file
        loader = _BoundedSafeLoader(stream)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise error(source, [f"malformed YAML: {_short_yaml_error(err)}"]) from None
    except _TooBig as err:
        raise error(source, [str(err)]) from None


def _short_yaml_error(err: yaml.YAMLError) -> str:
    """YAML's message, which may quote a whole line of the input, cut to a readable length."""
    text = str(err)
    return text if len(text) <= 8 * MAX_QUOTED else f"{text[: 8 * MAX_QUOTED]}…"


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
            message = "unknown key (check the spelling; see the recipe reference in docs/recipe.md)"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif "input" in item and item["type"] not in ("value_error", "assertion_error"):
            message = f"{message} (got {short_repr(item['input'])})"
        for part in message.split(PROBLEM_JOINER):
            problems.append(f"{path}: {part}" if path and not part.startswith(("classes.", "templates[")) else part)
    return problems


def key_path(loc: tuple[Any, ...]) -> str:
    """``classes.fox.prompts[0]`` from pydantic's location; a long or unprintable key is quoted, shortened."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            key = str(part)
            key = key if key.isprintable() and len(key) <= MAX_KEY_QUOTED else _key_repr(key)
            path += f".{key}" if path else key
    return path


def _key_repr(key: str) -> str:
    text = repr(key[:MAX_KEY_QUOTED])
    return text if len(key) <= MAX_KEY_QUOTED else f"{text}… ({len(key)} characters)"
