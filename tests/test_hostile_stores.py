"""Addresses and folders at their edges: store URLs are normalised or refused before any work (credentials never
repeated), the build's folders in ``.synthdata`` must be folders, and ``--overwrite`` deletes only the shards the
build made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builders.cli import main
from builders.export import BUILD_OUTPUT
from builders.store import output_store
from builders.store.local import OutputDir
from builders.store.remote_dir import RemoteDir, StoreURLError, store_url
from synthcore.outdir import OutputDirError
from tests.handmade import handmade_recipe, write_shards

RECIPE = """
name: stores
model: {id: tiny-random, safety_checker: false}
classes: {fox: {prompts: [a red fox]}}
splits: {train: 2}
scoring: {clip: {enabled: false}, resnet50: {enabled: false}}
"""


@pytest.mark.parametrize(
    "url, normal",
    [
        ("s3://bucket//prefix", "s3://bucket/prefix"),
        ("s3://bucket/a///b/", "s3://bucket/a/b"),
        ("S3://bucket/prefix", "s3://bucket/prefix"),
        ("gs://bucket", "gs://bucket"),
    ],
)
def test_a_store_url_has_one_spelling(url: str, normal: str):
    assert store_url(url) == normal == store_url(normal)


@pytest.mark.parametrize(
    "url, expected",
    [
        ("s3://", "expected s3://BUCKET/PREFIX"),
        ("s3:///x", "expected s3://BUCKET/PREFIX"),
        ("s3://bucket/../x", "expected s3://BUCKET/PREFIX"),
        ("s3://bucket/x\n", "expected s3://BUCKET/PREFIX"),
        ("ftp://host/x", "ftp:// is not an object store to build into"),
        ("http://host/x", "http:// is not an object store to build into"),
        ("zip://x/y", "zip:// is not an object store to build into"),
        ("s3://AKIAEXAMPLE:hunter2secret@bucket/x", "s3://***@bucket/x: the URL holds credentials"),
        ("s3://token@bucket/x?sig=hunter2secret", "s3://***@bucket/x: the URL holds credentials"),
        ("s3://bucket/x?X-Amz-Signature=hunter2secret", "s3://bucket/x: expected s3://BUCKET/PREFIX"),
    ],
)
def test_a_url_that_names_no_store_prefix_is_refused_without_its_secrets(url: str, expected: str, tmp_path, capsys):
    with pytest.raises(StoreURLError) as caught:
        store_url(url)
    assert expected in str(caught.value), str(caught.value)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE, encoding="utf-8")
    assert main([str(recipe), "--output-dir", url]) == 2
    err = capsys.readouterr().err
    assert expected in err and "hunter2secret" not in err and "AKIAEXAMPLE" not in err


def test_a_double_slash_prefix_is_the_same_prefix():
    one, two = RemoteDir("memory://hostile//datasets/x/"), RemoteDir("memory://hostile/datasets/x")
    one.write_text("a.txt", "written once")
    assert one.url == two.url == "memory://hostile/datasets/x" and two.sizes() == {"a.txt": 12}


@pytest.mark.parametrize("kind", ["file", "link to a folder", "link to nothing"])
@pytest.mark.parametrize("folder", ["claims", "shards", "progress"])
def test_a_file_or_link_in_place_of_a_build_folder_is_refused(folder: str, kind: str, tmp_path: Path):
    root = tmp_path / "out"
    store, _, _ = write_shards(handmade_recipe(), root)  # a real build's output directory
    path = root / ".synthdata" / folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("mine")
    os.rename(path, tmp_path / "moved") if path.exists() else None
    if kind == "file":
        path.write_text("not a folder")
    else:
        path.symlink_to(elsewhere if kind == "link to a folder" else tmp_path / "absent")
    with pytest.raises(OutputDirError, match=f"{path} is a (file|symbolic link), not the folder the build keeps"):
        output_store(str(root), 0, BUILD_OUTPUT)
    assert (elsewhere / "precious.txt").read_text() == "mine" and [p.name for p in elsewhere.iterdir()] == [
        "precious.txt"
    ]


def test_overwrite_deletes_only_the_shards_the_build_made(tmp_path: Path):
    store, plan, _ = write_shards(handmade_recipe(), tmp_path / "out")
    made = sorted(p.name for p in store.shards.iterdir())
    assert len(made) == 2 * len(plan.shards)
    users = {"notes.txt": "mine", "mine.parquet": "not a shard", "results.json": "{}", "a.tmp": "kept"}
    for name, text in users.items():
        (store.shards / name).write_text(text)
    (store.shards / "link.parquet").symlink_to(tmp_path / "out" / "recipe.yaml")
    OutputDir(store.root).prepare({"changed": True}, overwrite=True)
    assert sorted(p.name for p in store.shards.iterdir()) == sorted([*users, "link.parquet"])
    assert all((store.shards / name).read_text() == text for name, text in users.items())
