"""Output directories are ours alone, shards are verified, faults end in one message (fast tier: in-process, on
hand-made directories and Parquet files; the command-line runs are in test_faults.py)."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import socket
import subprocess
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

from builders.plan import Shard, content_fingerprint, make_plan
from builders.store.local import DamagedShards, OutputDir
from synthcore.faults import OUTPUT_REFUSED, WRITE_FAILED, Terminated, report_fault, write_failure
from synthcore.outdir import (
    CHECKOUT,
    LOCK_FILE,
    WORK_DIR,
    OutputDirError,
    Tool,
    check,
    claimed,
    copy_file,
    read_owner,
)
from tests.handmade import export, handmade_recipe
from tests.handmade import write_shards as write_handmade

TOOL = Tool("test-tool", ("README.md", "summary.json", "data", "pictures"))
OTHER = Tool("other-tool", ("README.md",))


def publish(path: Path, files: dict[str, str], tool: Tool = TOOL, **options) -> None:
    """One run of ``tool`` that writes ``files`` (relative path -> text) and publishes them."""
    with claimed(path, tool, **options) as owned, owned.staging() as stage:
        for name, text in files.items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_text(text)
        owned.publish(stage)


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# -- which directories a command may write -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "place, reason",
    [
        (lambda: Path("/"), "the root directory"),
        (Path.home, "your home directory"),
        (lambda: CHECKOUT, "the synthdata checkout"),
        (lambda: CHECKOUT.parent, "a directory above the synthdata checkout"),
    ],
)
def test_protected_places_are_refused_outright(place, reason: str):
    with pytest.raises(OutputDirError, match=reason):
        check(place(), TOOL)


def test_the_git_checkout_of_the_current_directory_is_refused(tmp_path: Path, monkeypatch):
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "src").mkdir()
    monkeypatch.chdir(tmp_path / "repo" / "src")
    with pytest.raises(OutputDirError, match="the git checkout of the current directory"):
        check("..", TOOL)
    assert check("../outputs/x", TOOL) == tmp_path / "repo" / "outputs" / "x"


def test_a_file_is_not_a_directory(tmp_path: Path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(OutputDirError, match=f"{tmp_path / 'f'} is a file"):
        check(tmp_path / "f", TOOL)
    with pytest.raises(OutputDirError, match=f"{tmp_path / 'f'} is a file, not a directory \\(a parent of"):
        check(tmp_path / "f" / "out", TOOL)
    assert (tmp_path / "f").read_text() == "mine"


def test_a_foreign_directory_is_refused_with_what_it_holds(tmp_path: Path):
    (tmp_path / "theirs" / "data").mkdir(parents=True)
    (tmp_path / "theirs" / "data" / "keep.parquet").write_text("theirs")
    (tmp_path / "theirs" / "notes.txt").write_text("theirs")
    before = tree(tmp_path / "theirs")
    for replace in (True, False):
        with pytest.raises(OutputDirError, match=r"is not empty \(data, notes.txt\) and was not made by synthdata"):
            check(tmp_path / "theirs", TOOL, replace=replace)
    with pytest.raises(OutputDirError):
        publish(tmp_path / "theirs", {"data/a.parquet": "ours"})
    assert tree(tmp_path / "theirs") == before


def test_absent_and_empty_directories_are_claimed_and_marked(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    publish(tmp_path / "empty", {"README.md": "card"})
    publish(tmp_path / "new" / "nested", {"README.md": "card", "data/a.parquet": "rows"})
    for root in (tmp_path / "empty", tmp_path / "new" / "nested"):
        owner = read_owner(root)
        assert owner.tool == TOOL.command and "README.md" in owner.files
        assert not (root / WORK_DIR / LOCK_FILE).exists(), "the lock is released after the run"
    assert read_owner(tmp_path / "new" / "nested").files == {"README.md", "data/a.parquet"}


def test_another_commands_directory_is_refused(tmp_path: Path):
    publish(tmp_path / "out", {"README.md": "card"}, tool=OTHER)
    with pytest.raises(OutputDirError, match="holds the output of `other-tool`, not of `test-tool`"):
        check(tmp_path / "out", TOOL)


def test_an_earlier_output_is_replaced_only_when_asked(tmp_path: Path):
    publish(tmp_path / "out", {"README.md": "one"})
    with pytest.raises(OutputDirError, match="pass --overwrite"):
        check(tmp_path / "out", TOOL, replace=False)
    publish(tmp_path / "out", {"README.md": "two"}, replace=True)
    assert (tmp_path / "out" / "README.md").read_text() == "two"


# -- what a run replaces ---------------------------------------------------------------------------------------------
def test_publish_replaces_only_what_we_wrote(tmp_path: Path):
    out = tmp_path / "out"
    publish(out, {"README.md": "one", "data/a.parquet": "a", "data/b.parquet": "b", "pictures/p.png": "p"})
    (out / "notes.txt").write_text("the user's")  # not one of our names: never touched
    publish(out, {"README.md": "two", "data/a.parquet": "a2"})
    assert tree(out) == {
        "README.md": b"two",
        "data/a.parquet": b"a2",
        "notes.txt": b"the user's",
        f"{WORK_DIR}/owner.json": (out / WORK_DIR / "owner.json").read_bytes(),
    }
    assert read_owner(out).files == {"README.md", "data/a.parquet"}


def test_a_file_we_did_not_write_under_our_names_is_never_replaced(tmp_path: Path):
    out = tmp_path / "out"
    publish(out, {"README.md": "one", "data/a.parquet": "a"})
    (out / "data" / "notes.txt").write_text("the user's")
    (out / "summary.json").write_text("the user's")
    with pytest.raises(OutputDirError, match="data/notes.txt") as refused:
        check(out, TOOL)
    assert "summary.json" in str(refused.value) and "Move them out" in str(refused.value)
    with pytest.raises(OutputDirError):
        publish(out, {"README.md": "two"})
    assert (out / "data" / "notes.txt").read_text() == "the user's" and (out / "README.md").read_text() == "one"


@pytest.mark.parametrize("name", ["README.md", "pictures", "data/a.parquet"])
def test_symbolic_links_are_never_written_through(tmp_path: Path, name: str):
    out, outside = tmp_path / "out", tmp_path / "outside"
    publish(out, {"README.md": "one", "data/a.parquet": "a", "pictures/p.png": "p"})
    outside.mkdir()
    (outside / "precious").write_text("precious")
    target = outside if name == "pictures" else outside / "precious"
    shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
    (out / name).symlink_to(target)
    with pytest.raises(OutputDirError, match="a symbolic link"):
        publish(out, {"README.md": "two", "data/a.parquet": "a2", "pictures/p.png": "p2"})
    assert tree(outside) == {"precious": b"precious"} and (out / name).is_symlink()


def test_a_linked_work_directory_is_refused(tmp_path: Path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / WORK_DIR).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputDirError, match="is a symbolic link"):
        check(tmp_path / "out", TOOL)


def test_a_failed_run_keeps_the_previous_output_whole(tmp_path: Path):
    out = tmp_path / "out"
    publish(out, {"README.md": "one", "data/a.parquet": "a", "data/b.parquet": "b"})
    before = tree(out)
    with pytest.raises(OSError), claimed(out, TOOL) as owned, owned.staging() as stage:
        (stage / "data").mkdir()
        (stage / "data" / "a.parquet").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert tree(out) == before
    assert not list((out / WORK_DIR).glob("staging-*"))


def test_a_partial_publish_moves_only_the_names_given(tmp_path: Path):
    out = tmp_path / "out"
    publish(out, {"README.md": "one", "data/a.parquet": "a"})
    with claimed(out, TOOL) as owned, owned.staging() as stage:
        (stage / "summary.json").write_text("new")
        (stage / "data").mkdir()
        owned.publish(stage, names=["summary.json", "pictures"])
    assert (out / "summary.json").read_text() == "new" and (out / "data" / "a.parquet").read_text() == "a"
    assert read_owner(out).files == {"README.md", "data/a.parquet", "summary.json"}


# -- a failure leaves nothing that blocks the retry ------------------------------------------------------------------
def test_a_failed_run_leaves_the_directory_as_it_found_it(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "absent" / "nested", tmp_path / "empty"):
        with pytest.raises(RuntimeError), claimed(path, TOOL):
            raise RuntimeError("the run failed")
    assert not (tmp_path / "absent").exists()
    assert list((tmp_path / "empty").iterdir()) == []


def test_a_failed_run_keeps_what_a_resume_uses(tmp_path: Path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), claimed(out, TOOL, keep=lambda: True) as owned:
        (owned.work / "shard").write_text("finished work")
        raise RuntimeError("the run failed")
    assert (out / WORK_DIR / "shard").exists()
    publish(out, {"README.md": "card"})  # the retry is not refused


def test_read_only_directory_is_refused_with_the_path(tmp_path: Path):
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() != 0:
        out.chmod(0o555)
        expected = "permission denied"
    elif subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(out)]).returncode == 0:
        expected = "read-only file system"
    else:
        pytest.skip("running as root without the right to mount a read-only file system")
    try:
        with pytest.raises(OutputDirError, match=f"cannot write to {out}: {expected}"):
            check(out / "dataset", TOOL)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(out)], check=True)
        out.chmod(0o755)


# -- one run at a time ---------------------------------------------------------------------------------------------
def test_a_second_run_is_refused_while_the_first_holds_the_directory(tmp_path: Path):
    out = tmp_path / "out"
    with claimed(out, TOOL):
        with pytest.raises(OutputDirError, match=f"process {os.getpid()} on host {socket.gethostname()}"):
            publish(out, {"README.md": "two"})
    publish(out, {"README.md": "two"})


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path: Path):
    out = tmp_path / "out"
    publish(out, {"README.md": "one"})
    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / WORK_DIR / LOCK_FILE).write_text(f"{dead.pid}\n{socket.gethostname()}\n")
    publish(out, {"README.md": "two"})
    assert (out / "README.md").read_text() == "two" and not (out / WORK_DIR / LOCK_FILE).exists()


def test_a_lock_of_another_host_is_named_and_kept(tmp_path: Path):
    out = tmp_path / "out"
    publish(out, {"README.md": "one"})
    (out / WORK_DIR / LOCK_FILE).write_text("4242\nnode-7\n")
    with pytest.raises(OutputDirError, match=f"process 4242 on host node-7.*delete {out / WORK_DIR / LOCK_FILE}"):
        publish(out, {"README.md": "two"})
    assert (out / WORK_DIR / LOCK_FILE).exists()


# -- files -----------------------------------------------------------------------------------------------------------
def test_copies_are_never_hard_links(tmp_path: Path):
    (tmp_path / "a").write_bytes(os.urandom(3 << 20))
    copy_file(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_bytes() == (tmp_path / "a").read_bytes()
    assert (tmp_path / "a").stat().st_ino != (tmp_path / "b").stat().st_ino and (tmp_path / "a").stat().st_nlink == 1


# -- faults ----------------------------------------------------------------------------------------------------------
def test_faults_end_in_one_message_and_their_exit_code(tmp_path: Path, capsys):
    wrapped = RuntimeError("background writer failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert write_failure(wrapped).errno == errno.ENOSPC
    assert report_fault(wrapped, tmp_path, "Nothing lost.") == WRITE_FAILED
    assert f"error: writing to {tmp_path} failed: no space left on the device" in capsys.readouterr().err
    assert report_fault(OutputDirError("refused"), tmp_path, "") == OUTPUT_REFUSED
    assert report_fault(Terminated(), tmp_path, "Run it again.") == 143
    assert "interrupted (SIGTERM). Run it again." in capsys.readouterr().err
    assert report_fault(KeyboardInterrupt(), tmp_path, "") == 130
    assert report_fault(ValueError("a bug"), tmp_path, "") is None


# -- shards are verified ---------------------------------------------------------------------------------------------
FEATURES = datasets.Features({"id": datasets.Value("string"), "pixels": datasets.Value("binary")})


def planned_shards() -> list[Shard]:
    """The hand-made recipe's planned shards (two images each), to write made-up rows into."""
    recipe = handmade_recipe()
    return list(make_plan(recipe, content_fingerprint(recipe, "cpu", "float32")).shards)


def write_shard(store: OutputDir, shard: Shard, dropped: tuple[str, ...] = ()) -> None:
    writer = store.open_shard(shard, FEATURES)
    writer.write([{"id": job.id, "pixels": os.urandom(2000)} for job in shard.jobs if job.id not in dropped])
    writer.safety_dropped += dropped
    writer.commit()


@pytest.fixture
def shards(tmp_path: Path) -> tuple[OutputDir, list[Shard]]:
    store = OutputDir(tmp_path / "out")
    store.shards.mkdir(parents=True)
    made = planned_shards()[:4]
    for shard in made:
        write_shard(store, shard)
    return store, made


def test_a_committed_shard_records_ids_size_and_checksum(shards):
    store, made = shards
    record = store.record(made[0])
    assert record.ids == [job.id for job in made[0].jobs]
    assert record.bytes == store.shard_path(made[0]).stat().st_size and len(record.sha256) == 64
    assert store.audit(made, checksum=True) == [] and not list(store.shards.glob("*.tmp*"))


def test_damaged_shards_are_found_reported_by_name_and_set_aside(shards):
    store, (flipped, truncated, swapped, fine) = shards
    data = bytearray(store.shard_path(flipped).read_bytes())
    data[len(data) // 3] ^= 0xFF  # one flipped bit in the image bytes: size and footer unchanged
    store.shard_path(flipped).write_bytes(bytes(data))
    store.shard_path(truncated).write_bytes(store.shard_path(truncated).read_bytes()[:-50])
    for suffix in (".parquet", ".json"):  # another valid shard, with its own record
        shutil.copyfile(store.shard_path(fine).with_suffix(suffix), store.shard_path(swapped).with_suffix(suffix))

    cheap = {bad.shard.key: bad.reason for bad in store.audit([flipped, truncated, swapped, fine])}
    assert set(cheap) == {truncated.key, swapped.key}, "resume's checks: size, footer and ids, no byte read"
    assert "truncated" in cheap[truncated.key] and "another shard" in cheap[swapped.key]
    full = store.verify([flipped, truncated, swapped, fine])
    assert [(bad.shard.key, bad.reason) for bad in full] == [
        (truncated.key, "its file is missing"),
        (swapped.key, "its file is missing"),
        (flipped.key, "its bytes differ from those written (SHA-256 mismatch)"),
    ]
    assert flipped.key in str(full[-1])
    assert sorted(p.name for p in store.damaged.iterdir()) == sorted(
        f"{s.key}{suffix}" for s in (flipped, truncated, swapped) for suffix in (".parquet", ".json")
    )
    assert [s for s in (flipped, truncated, swapped, fine) if store.done(s)] == [fine]


def test_a_shard_without_a_record_is_not_trusted(shards):
    store, made = shards
    store.shard_path(made[0]).with_suffix(".json").write_text(json.dumps({"safety_dropped": []}))  # an older format
    assert [bad.reason for bad in store.audit(made)] == [
        "no record of its checksum (its .json is missing or unreadable)"
    ]


def test_safety_drops_are_part_of_the_record(tmp_path: Path):
    store = OutputDir(tmp_path / "out")
    store.shards.mkdir(parents=True)
    shard = planned_shards()[0]
    write_shard(store, shard, dropped=(shard.jobs[1].id,))
    assert store.num_rows(shard) == 1 and store.safety_dropped(shard) == [shard.jobs[1].id]
    assert pq.ParquetFile(store.shard_path(shard)).metadata.num_rows == 1
    assert store.verify([shard]) == []


def test_an_aborted_shard_leaves_no_temporary_file(tmp_path: Path):
    store = OutputDir(tmp_path / "out")
    store.shards.mkdir(parents=True)
    shard = planned_shards()[0]
    writer = store.open_shard(shard, FEATURES)
    writer.write([{"id": shard.jobs[0].id, "pixels": b"x"}])
    writer.abort()
    assert list(store.shards.iterdir()) == []


# -- export: copies, verified, beside the old one ---------------------------------------------------------------------
def test_an_export_copies_verified_shards_and_a_damaged_one_leaves_the_old_export_whole(tmp_path: Path):
    recipe = handmade_recipe()
    store, plan, provenance = write_handmade(recipe, tmp_path / "out")
    export(recipe, store, plan, provenance)
    shard_inodes = {store.shard_path(shard).stat().st_ino for shard in plan.shards}
    exported = sorted((store.root / "data").glob("*.parquet"))
    assert all(f.stat().st_nlink == 1 and f.stat().st_ino not in shard_inodes for f in exported)
    published = lambda: {k: v for k, v in tree(store.root).items() if not k.startswith(WORK_DIR)}  # noqa: E731
    before = published()

    damaged = plan.shards[2]
    data = bytearray(store.shard_path(damaged).read_bytes())
    data[len(data) // 2] ^= 0x01
    store.shard_path(damaged).write_bytes(bytes(data))
    with pytest.raises(DamagedShards, match=damaged.key) as raised:
        export(recipe, store, plan, provenance)
    assert published() == before, "nothing of the previous export was touched"
    assert str(pickle.loads(pickle.dumps(raised.value))) == str(raised.value), "the same from another process"
    assert (store.damaged / f"{damaged.key}.parquet").read_bytes() == bytes(data)
