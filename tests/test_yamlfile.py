"""Reading a recipe is bounded: size, alias expansion, depth, encodings and message lengths."""

from __future__ import annotations

import codecs
import time
from pathlib import Path

import pytest

from builders.recipe import RecipeError, load_recipe
from synthcore.yamlfile import MAX_DEPTH, MAX_FILE_BYTES, MAX_PROBLEMS

MINIMAL = "name: t\nclasses: {a: {prompts: [x]}}\nsplits: {train: 1}\n"
FAST_S = 5.0  # every refusal here takes well under a second; the bound leaves room for a busy machine


def refused(path: Path) -> RecipeError:
    """The error reading ``path`` gives, which must come fast, name the file, and stay short."""
    start = time.monotonic()
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert time.monotonic() - start < FAST_S
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid recipe") and len(message) < 8000, message[:500]
    return caught.value


def write(tmp_path: Path, data: bytes | str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def ten_aliases(name: str) -> str:
    return "[" + ", ".join([f"*{name}"] * 10) + "]"


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path):
    levels = ["a: &l0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"l{i}: &l{i} {ten_aliases(f'l{i - 1}')}" for i in range(1, 9)
    ]  # 10^9 values once expanded
    error = refused(write(tmp_path, "\n".join(levels) + "\nseed: *l8\n"))
    assert error.problems == ["the document expands to more than 200000 values (aliases used many times?)"]


def test_a_long_string_repeated_by_aliases_is_refused(tmp_path: Path):
    text = f"s: &s {'x' * 300_000}\nb: &b {ten_aliases('s')}\nc: &c {ten_aliases('b')}\nname: {ten_aliases('c')}\n"
    error = refused(write(tmp_path, text))  # 300 million characters once expanded, under a typed key
    assert error.problems == ["the document expands to more than 16 Mi characters (aliases used many times?)"]


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 100_000])
def test_deep_nesting_is_refused_without_recursion(tmp_path: Path, levels: int):
    error = refused(write(tmp_path, "x: " + "[" * levels + "]" * levels + "\n"))
    assert "nest" in error.problems[0]


def test_nesting_within_the_bound_is_read(tmp_path: Path):
    inner = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)
    error = refused(write(tmp_path, MINIMAL + f"extra: {inner}\n"))
    assert error.problems == ["extra: unknown key (check the spelling; see the recipe reference in docs/recipe.md)"]


def test_dev_zero_and_huge_files_are_refused_by_size(tmp_path: Path):
    assert "larger than 1024 KiB" in refused(Path("/dev/zero")).problems[0]
    assert "larger than 1024 KiB" in refused(write(tmp_path, b"a" * (50 << 20))).problems[0]


@pytest.mark.parametrize(
    "text",
    [
        "[" + "x, " * (MAX_FILE_BYTES // 3 - 1) + "]",  # a flow sequence of 350,000 values
        "- x\n" * (MAX_FILE_BYTES // 4 - 1),
        "a" * (MAX_FILE_BYTES - 1),  # one token
        '"' + "\\u00e9" * (MAX_FILE_BYTES // 6 - 1) + '"',
    ],
    ids=["flow", "block", "token", "escapes"],
)
def test_a_file_at_the_size_cap_is_refused_fast(tmp_path: Path, text: str):
    refused(write(tmp_path, text))


@pytest.mark.parametrize(
    "data",
    [
        MINIMAL.encode(),
        codecs.BOM_UTF8 + MINIMAL.encode(),
        MINIMAL.encode("utf-16"),
        codecs.BOM_UTF16_LE + MINIMAL.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + MINIMAL.encode("utf-16-be"),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16", "utf-16-le-bom", "utf-16-be-bom"],
)
def test_utf8_and_utf16_with_a_bom_are_read(tmp_path: Path, data: bytes):
    assert load_recipe(write(tmp_path, data)).class_names == ["a"]


def test_unicode_text_survives_every_encoding(tmp_path: Path):
    text = MINIMAL.replace("{a: ", "{여우 café: ")
    for data in (codecs.BOM_UTF8 + text.encode(), text.encode("utf-16")):
        assert load_recipe(write(tmp_path, data)).class_names == ["여우 café"]


@pytest.mark.parametrize(
    "data, expected",
    [
        ((MINIMAL + "description: café\n").encode("latin-1"), "not UTF-8"),
        (MINIMAL.encode("utf-16-le"), "UTF-16 without a byte-order mark"),
        (MINIMAL.encode("utf-32"), "UTF-32"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),
    ],
    ids=["latin-1", "utf-16-no-bom", "utf-32", "binary"],
)
def test_other_encodings_are_refused_naming_the_file(tmp_path: Path, data: bytes, expected: str):
    error = refused(write(tmp_path, data))
    assert error.source == str(tmp_path / "r.yaml") and expected in error.problems[0] and "UTF-8" in error.problems[0]


def test_merge_keys_work_as_in_yaml_1_1(tmp_path: Path):
    text = (
        "name: t\n"
        "classes:\n"
        "  fox: &base {prompts: [a fox], guidance_scale: 3.0}\n"
        "  dog: &dog {<<: *base, prompts: [a dog], negative_prompt: blurry}\n"
        "  cat: {<<: [{guidance_scale: 5.0}, *dog], prompts: [a cat]}\n"  # the first mapping listed wins
        "splits: {train: 1}\n"
    )
    classes = load_recipe(write(tmp_path, text)).classes
    assert [(c.prompts, c.guidance_scale, c.negative_prompt) for c in classes.values()] == [
        (["a fox"], 3.0, None),
        (["a dog"], 3.0, "blurry"),
        (["a cat"], 5.0, "blurry"),
    ]


def test_duplicate_keys_are_refused(tmp_path: Path):
    assert "duplicate key 'classes'" in refused(write(tmp_path, MINIMAL + "classes: {}\n")).problems[0]


def test_messages_never_quote_a_huge_input_whole(tmp_path: Path):
    long = "k" * 500_000
    error = refused(
        write(tmp_path, f"name: [{long}]\n? {long}\n: 1\nclasses: {{a: {{prompts: [x]}}}}\nsplits: {{t: 1}}\n")
    )
    assert len(error.problems) == 2 and all(len(p) < 400 for p in error.problems), error.problems


def test_many_problems_are_counted_not_all_listed(tmp_path: Path):
    text = MINIMAL + "".join(f"extra{i}: 1\n" for i in range(MAX_PROBLEMS + 30))
    error = refused(write(tmp_path, text))
    assert len(error.problems) == MAX_PROBLEMS + 30
    assert str(error).endswith("… and 30 more problems")
