"""What decides the content of a build's shards, read from the marks on the recipe's fields.

Every recipe field says what it decides (``json_schema_extra={"content": ...}``, see ``builders.recipe``): every
shard's content (``True``), some images' (``"key"``: in their shards' keys), nothing (``False``), or, for a section
(``"fields"``), each of its keys says. ``content_entries`` turns the ``True`` fields into the content fingerprint's
entries (``builders.plan.content_fingerprint``), so a new key cannot be left out of it by forgetting a line; a few
marks keep the entries as builds have always recorded them:

- ``fingerprint``: the entry's name, when it is not the key's path (``model.vae``, ``label_texts``);
- ``grouped``: fields of one entry name make a list of their values, in field order;
- ``only_with``: the entry is ``None`` unless the named sibling is true (the safety checker's settings);
- ``omit_default``: no entry while the field keeps its default (keys added later leave older fingerprints as
  they were);
- ``resolved``: the value the build resolved at run time stands for the field's (``model.dtype``'s ``auto``);
- ``per_class``: a class's field, gathered over the classes as a ``list`` (a missing value is the class's name,
  as its label text is) or a ``dict`` by class name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

CONTENT_KINDS = (True, False, "key", "fields")


def mark(field: FieldInfo) -> dict[str, Any]:
    """The field's content marks (empty for a field that has none)."""
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def marked_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Every field a content mark must classify, with its key path: the model's own, and those of the sections
    marked ``fields`` (a dict of sections, as ``classes``, under ``<name>.*``)."""
    for name, field in model.model_fields.items():
        yield prefix + name, field
        if mark(field).get("content") == "fields":
            section = _section_type(field)
            yield from marked_fields(section, f"{prefix}{name}.{'*.' if section is not field.annotation else ''}")


def _section_type(field: FieldInfo) -> type[BaseModel]:
    """The model of a section field: the field's type, or the value type of a dict of sections."""
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return annotation.__args__[1]  # dict[str, Section]


def content_entries(model: BaseModel, resolved: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The fingerprint entries of ``model``'s content fields, in field order; ``resolved`` holds the values the
    build resolved at run time, by key path."""
    entries: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        marks, path, value = mark(field), prefix + name, getattr(model, name)
        if marks.get("content") == "fields" and isinstance(value, dict):
            entries[marks["fingerprint"]] = list(value)
            entries |= _class_entries(value, _section_type(field))
        elif marks.get("content") == "fields":
            entries |= content_entries(value, resolved, f"{path}.")
        elif marks.get("content") is True:
            _add(entries, model, field, marks, resolved[path] if marks.get("resolved") else value, path)
    return entries


def _add(entries: dict[str, Any], model: BaseModel, field: FieldInfo, marks: dict, value: Any, path: str) -> None:
    if marks.get("omit_default") and value == field.default:
        return
    if "only_with" in marks and not getattr(model, marks["only_with"]):
        value = None
    key = marks.get("fingerprint", path)
    if marks.get("grouped"):
        entries.setdefault(key, []).append(to_jsonable_python(value))
    else:
        entries[key] = to_jsonable_python(value)


def _class_entries(sections: dict[str, BaseModel], section: type[BaseModel]) -> dict[str, Any]:
    """The entries of the content fields of a dict of sections (the classes), each gathered over them."""
    entries: dict[str, Any] = {}
    for name, field in section.model_fields.items():
        marks = mark(field)
        if marks.get("content") is not True:
            continue
        values = {key: to_jsonable_python(getattr(section, name)) for key, section in sections.items()}
        if marks["per_class"] == "list":
            entries[marks["fingerprint"]] = [key if value is None else value for key, value in values.items()]
        else:
            entries[marks["fingerprint"]] = values
    return entries
