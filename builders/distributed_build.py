"""The build: plan, divide the pending shards between processes, write them, export the dataset.

Run under ``accelerate launch`` (any number of processes and machines) or plain ``python``. Each process loads
the pipeline on its own device and writes its own shards; the main process only waits (driving the one
progress bar) and then verifies the shards and exports the dataset; the other processes are done once every shard
is made. Nothing here depends on the number of processes except who makes which shard, so the dataset is the same
for any N.

The main process claims the output directory for the build (``synthcore.outdir``: ours alone, one build at a
time); the other processes share its claim and its lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

import torch
from accelerate.utils import broadcast_object_list, gather_object
from tqdm.auto import tqdm

from builders.builder import SyntheticImages
from builders.export import BUILD_OUTPUT, ExportResult, export_dataset
from builders.generators import family_of, resolve_family
from builders.objstore import output_store
from builders.plan import Plan, Shard
from builders.recipe import Recipe
from builders.store import DamagedShard, DamagedShards, OutputDir, ShardWriter
from builders.writer_queue import TaskQueue
from eval.summary import DatasetSummary
from synthcore.launch import start_state
from synthcore.model_refs import Placement, choose_dtype
from synthcore.outdir import OutputDirError, OwnedDir

log = logging.getLogger("synthdata")


@dataclass
class BuildReport:
    output_dir: str
    counts: dict[str, dict[str, int]]
    images_planned: int
    images_found_done: int
    images_generated: int
    safety_dropped: list[str] = field(default_factory=list)
    damaged: list[DamagedShard] = field(default_factory=list)  # set aside and made again (main process)
    seconds: float = 0.0
    summary: DatasetSummary | None = None  # on the main process
    processes: int = 1
    shards_per_process: list[int] = field(default_factory=list)  # shards each rank wrote in this run

    def to_json(self) -> dict:
        """What ``.synthdata/run.json`` records of this run (how the work went, not what the dataset is)."""
        return {
            "images_planned": self.images_planned,
            "images_found_done": self.images_found_done,
            "images_generated": self.images_generated,
            "processes": self.processes,
            "shards_per_process": self.shards_per_process,
            "damaged_shards": [bad.shard.key for bad in self.damaged],
            "safety_dropped": self.safety_dropped,
            "seconds": round(self.seconds, 3),
        }


def placement_for(recipe: Recipe, device: torch.device) -> Placement:
    """``model.dtype: auto`` on a GPU is the family's own (bfloat16 for FLUX.1, SD3, Sana; float16 otherwise)."""
    requested = recipe.model.dtype
    if requested == "auto" and device.type == "cuda":
        requested = family_of(recipe).gpu_dtype
    return Placement(device=str(device), dtype_name=choose_dtype(requested, device.type))


def build(recipe: Recipe, output_dir: str, *, overwrite: bool = False, background: bool = True) -> BuildReport:
    """Build the dataset of ``recipe`` into ``output_dir`` on this process's share of the work."""
    started = time.perf_counter()
    recipe = resolve_family(recipe)
    state = start_state()
    store = output_store(output_dir, state.process_index)  # every rank alike, before anything is written
    state.wait_for_everyone()
    builder = SyntheticImages(recipe=recipe, placement=placement_for(recipe, state.device), name=recipe.name)
    with ExitStack() as claim:
        owned = _claim(state, claim, store)
        fingerprint = builder.fingerprint()
        store.check_fingerprint(fingerprint, overwrite)  # every rank decides alike, before anything is written
        state.wait_for_everyone()
        plan = builder.plan()
        damaged = []
        if state.is_main_process:
            store.prepare(fingerprint, overwrite)
            damaged = store.audit(list(plan.shards))  # those that fail are set aside, so they count as not done
        state.wait_for_everyone()

        pending = [shard for shard in plan.shards if not store.is_done(shard)]
        done_images = plan.num_images - sum(s.size for s in pending)
        state.wait_for_everyone()  # every rank has its list before any rank commits a shard, so all lists agree
        if state.is_main_process:
            log.info(
                "plan: %d images in %d shards; %d images found done, %d to make on %d process(es)",
                plan.num_images,
                len(plan.shards),
                done_images,
                plan.num_images - done_images,
                state.num_processes,
            )
        monitor = _ProgressBar(store, plan, pending, done_images) if state.is_main_process else None
        with state.split_between_processes(pending) as mine:
            mine = list(mine)
            write_shards(builder, store, mine, state, background)
        shards_per_process = gather_object([len(mine)]) if state.num_processes > 1 else [len(mine)]
        if monitor:
            monitor.join()
        state.wait_for_everyone()

        exported = None
        if state.is_main_process:  # the others are done: they do not wait through the export
            exported, remade = _export(builder, store, owned, plan, state, background)
            damaged += remade
            done_images -= sum(bad.shard.size for bad in remade)
        report = BuildReport(
            output_dir=store.location,
            counts=plan.counts(),
            images_planned=plan.num_images,
            images_found_done=done_images,
            images_generated=plan.num_images - done_images,
            safety_dropped=[i for shard in plan.shards for i in store.safety_dropped(shard)],
            damaged=damaged,
            seconds=time.perf_counter() - started,
            summary=exported.summary if exported else None,
            processes=state.num_processes,
            shards_per_process=shards_per_process,
        )
        if state.is_main_process:
            store.write_run_report(report.to_json())
        return report


def _claim(state, stack: ExitStack, store: OutputDir) -> OwnedDir | None:
    """The main process claims the output directory for this build (marker, lock) until ``stack`` closes; every
    process learns whether it could, so all of them stop alike when it could not."""
    owned, refusal = None, None
    if state.is_main_process:
        try:
            owned = stack.enter_context(store.claim(BUILD_OUTPUT, keep=store.has_shards))
        except OutputDirError as err:
            refusal = str(err)
    if state.num_processes > 1:
        refusal = broadcast_object_list([refusal])[0]
    if refusal:
        raise OutputDirError(refusal)
    return owned


def _export(
    builder: SyntheticImages, store: OutputDir, owned: OwnedDir, plan: Plan, state, background: bool
) -> tuple[ExportResult, list[DamagedShard]]:
    """Export the dataset. Shards that fail their checksum there (flipped bytes, say) were set aside: they are made
    again on this process and the export runs again; a second failure is an error."""
    args = (builder.recipe, builder.info.features, builder.provenance(), store, owned, plan)
    try:
        return export_dataset(*args), []
    except DamagedShards as err:
        write_shards(builder, store, [bad.shard for bad in err.damaged], state, background)
        return export_dataset(*args), err.damaged


# Images of a batch are encoded in parallel: PNG and WebP encoders release the GIL, and one core would not keep
# up with a fast GPU (a 512x512 PNG at level 6 takes 50 to 250 ms; an H100 can make ~5 to 10 images a second).
ENCODE_THREADS = min(4, os.cpu_count() or 1)


def write_shards(builder: SyntheticImages, store: OutputDir, shards: list[Shard], state, background: bool) -> None:
    """Make this process's shards; encoding and writing run in a background thread beside generation."""
    features = builder.info.features
    written = 0
    unfinished: dict[str, ShardWriter] = {}  # opened and not yet committed: aborted when the build fails

    def write(writer, rows) -> None:
        nonlocal written
        with builder.clock.stage("encode"):
            encoded = list(encoders.map(builder.encode, rows.rows))
        with builder.clock.stage("write"):
            writer.write(encoded)
            writer.safety_dropped += rows.dropped
            written += len(rows.rows) + len(rows.dropped)
            store.report_progress(state.process_index, written)

    def commit(writer) -> None:
        with builder.clock.stage("write"):
            writer.commit()
        del unfinished[writer.shard.key]

    try:
        with (
            ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="synthdata-encode") as encoders,
            TaskQueue(background=background, max_pending=4) as queue,
        ):
            for shard in shards:
                log.info(
                    "rank %d: writing shard %s (%s/%s, %d images)",
                    state.process_index,
                    shard.key,
                    shard.split,
                    shard.class_name,
                    shard.size,
                )
                writer = unfinished[shard.key] = store.open_shard(shard, features)
                for rows in builder.shard_rows(shard):
                    queue.submit(write, writer, rows)
                queue.submit(commit, writer)
    finally:  # the queue has drained: what is still open was not finished
        for writer in unfinished.values():
            writer.abort()
    if builder.clock.seconds:
        log.info("rank %d: time per stage: %s", state.process_index, builder.clock)


class _ProgressBar(threading.Thread):
    """The one progress bar of the build (main process), fed by every process's progress file."""

    def __init__(self, store: OutputDir, plan: Plan, pending: list[Shard], done_images: int):
        super().__init__(name="synthdata-progress", daemon=True)
        self.store, self.plan, self.done_images = store, plan, done_images
        self.to_make = sum(shard.size for shard in pending)
        self.start()

    def run(self) -> None:
        with tqdm(
            total=self.plan.num_images, initial=self.done_images, unit="img", desc="generating", dynamic_ncols=True
        ) as bar:
            while True:
                made = self.store.progress_total()  # one small file per rank: O(processes) per poll
                finished = made >= self.to_make
                bar.update(self.done_images + made - bar.n)
                if finished:
                    return
                time.sleep(0.5)
