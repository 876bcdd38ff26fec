"""The build: plan, make the shards on every process, export the dataset.

Run under ``accelerate launch`` (any number of processes and machines) or plain ``python``. Each process loads
the pipeline on its own device, then claims shards one at a time and makes them (``builders.store.claims``: a shard
whose process is slow or lost is taken over by another when its lease runs out) until every shard is finished;
the main process also drives the one progress bar, and then verifies the shards and exports the dataset. After
the start, no process waits for another in a collective: the others are done once every shard is finished, and a
stalled one holds up nobody. A shard's content depends only on its key, never on who makes it, so the dataset is the
same for any N.

The main process claims the output directory for the build (``synthcore.outdir``: ours alone, one build at a
time); the other processes share its claim and its lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

import torch
from accelerate.utils import broadcast_object_list
from tqdm.auto import tqdm

from builders.builder import LOADING, SyntheticImages
from builders.expansion import resolve_lock
from builders.export import BUILD_OUTPUT, ExportResult, export_dataset
from builders.generators import family_of, resolve_family
from builders.hub import uploads_during_build
from builders.plan import Plan, Shard
from builders.recipe import Recipe
from builders.store import Store, output_store
from builders.store.claims import Claim, Claims, lease_seconds
from builders.store.local import DamagedShard, DamagedShards, RankProgress, ShardWriter
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
    taken_over_per_process: list[int] = field(default_factory=list)  # of them, taken over from a lapsed lease
    making_seconds: float = 0.0  # from the start of the work to the last shard finished (main process)
    loading_seconds_per_process: list[float] = field(default_factory=list)  # seconds each rank spent loading models

    def to_json(self) -> dict:
        """What ``.synthdata/run.json`` records of this run (how the work went, not what the dataset is)."""
        return {
            "images_planned": self.images_planned,
            "images_found_done": self.images_found_done,
            "images_generated": self.images_generated,
            "processes": self.processes,
            "shards_per_process": self.shards_per_process,
            "taken_over_per_process": self.taken_over_per_process,
            "making_seconds": round(self.making_seconds, 3),
            "loading_seconds_per_process": self.loading_seconds_per_process,
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
    store = output_store(output_dir, state.process_index, BUILD_OUTPUT)  # every rank alike, before anything is written
    state.wait_for_everyone()
    with ExitStack() as claim:
        owned = _claim(state, claim, store)
        recipe = resolve_lock(recipe, store, state, owned, overwrite)  # prompt_expansion's prompts, all ranks
        builder = SyntheticImages(recipe=recipe, placement=placement_for(recipe, state.device), name=recipe.name)
        fingerprint = builder.fingerprint()
        store.check_fingerprint(fingerprint, overwrite)  # every rank decides alike, before anything is written
        state.wait_for_everyone()
        plan = builder.plan()
        damaged, pending, done_images, monitor = [], [], 0, None
        if state.is_main_process:  # the others compute no key up front: each is computed when its shard is scanned
            store.prepare(fingerprint, overwrite)
            damaged = store.audit(list(plan.shards))  # those that fail are set aside, so they count as not done
            claim.enter_context(uploads_during_build(store, recipe.hub))  # hub.push_during_build: until export
            pending = [shard for shard in plan.shards if not store.done(shard)]  # nobody makes any yet
            done_images = plan.num_images - sum(s.size for s in pending)
            log.info(
                "plan: %d images in %d shards; %d images found done, %d to make on %d process(es)",
                plan.num_images,
                len(plan.shards),
                done_images,
                plan.num_images - done_images,
                state.num_processes,
            )
        state.wait_for_everyone()  # the last collective: from here on, no process waits for another

        claims = Claims(store.claim_files(state.process_index), state.process_index, lease_seconds())
        making = time.perf_counter()
        if state.is_main_process:
            monitor = _ProgressBar(store, plan.num_images, state.num_processes, done_images)
        made = write_shards(builder, store, claims, spread(plan.shards, state), state, background)
        making_seconds = time.perf_counter() - making
        if monitor:
            monitor.finish()

        exported, progress = None, [made]
        if state.is_main_process:  # the others are done: they do not wait through the export
            progress = _every_process_progress(store, state.num_processes, len(pending))
            exported, remade = _export(builder, store, claims, owned, plan, state, background)
            damaged += remade
            done_images -= sum(bad.shard.size for bad in remade)
        report = BuildReport(
            output_dir=store.location,
            counts=plan.counts(),
            images_planned=plan.num_images,
            images_found_done=done_images,
            images_generated=plan.num_images - done_images if state.is_main_process else made.images,
            safety_dropped=[i for shard in plan.shards for i in store.safety_dropped(shard)]
            if state.is_main_process
            else [],
            damaged=damaged,
            seconds=time.perf_counter() - started,
            summary=exported.summary if exported else None,
            processes=state.num_processes,
            shards_per_process=[p.shards for p in progress],
            taken_over_per_process=[p.taken_over for p in progress],
            making_seconds=making_seconds,
            loading_seconds_per_process=[p.loading_seconds for p in progress],
        )
        if state.is_main_process:
            store.write_run_report(report.to_json())
        return report


def spread(shards: Sequence[Shard], state) -> Iterator[Shard]:
    """The plan's shards in the order this process scans them: from its own place in the list (rank/N of the way
    along), wrapping around, so the processes start on different shards instead of racing for the same ones."""
    first = len(shards) * state.process_index // state.num_processes
    return (shards[i % len(shards)] for i in range(first, first + len(shards)))


def _every_process_progress(store: Store, processes: int, to_make: int) -> list[RankProgress]:
    """Every process's progress once the shards are finished. A process records a shard just after committing it,
    so the main process waits a moment (at most 5 s) for the records to add up to the shards that were made."""
    deadline = time.monotonic() + 5
    progress = store.progress_of(processes)
    while sum(p.shards for p in progress) < to_make and time.monotonic() < deadline:
        time.sleep(0.05)
        progress = store.progress_of(processes)
    return progress


def _claim(state, stack: ExitStack, store: Store) -> OwnedDir | None:
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
    builder: SyntheticImages, store: Store, claims: Claims, owned: OwnedDir, plan: Plan, state, background: bool
) -> tuple[ExportResult, list[DamagedShard]]:
    """Export the dataset. Shards that fail their checksum there (flipped bytes, say) were set aside: they are made
    again on this process and the export runs again; a second failure is an error."""
    args = (builder.recipe, builder.info.features, builder.provenance(), store, owned, plan)
    try:
        return export_dataset(*args), []
    except DamagedShards as err:
        write_shards(builder, store, claims, [bad.shard for bad in err.damaged], state, background)
        return export_dataset(*args), err.damaged


# Images of a batch are encoded in parallel: PNG and WebP encoders release the GIL, and one core would not keep
# up with a fast GPU (a 512x512 PNG at level 6 takes 50 to 250 ms; an H100 can make ~5 to 10 images a second).
ENCODE_THREADS = min(4, os.cpu_count() or 1)


def write_shards(
    builder: SyntheticImages, store: Store, claims: Claims, shards: Iterable[Shard], state, background: bool
) -> RankProgress:
    """Claim and make shards of ``shards``, in that order, until every one of them is finished (by this process or
    another); return what this process made. A shard another process holds is looked at again every
    ``claims.poll_seconds`` until it is finished or its holder's lease runs out (then this process takes it over)."""
    progress = RankProgress()
    while True:
        held = _write_pass(builder, store, claims, shards, progress, state, background)
        shards = [shard for shard in held if not store.done(shard, fresh=True)]
        if not shards:
            break
        time.sleep(claims.poll_seconds)
    if builder.clock.seconds:
        log.info("rank %d: time per stage: %s", state.process_index, builder.clock)
    return progress


def _write_pass(
    builder: SyntheticImages,
    store: Store,
    claims: Claims,
    shards: Iterable[Shard],
    progress: RankProgress,
    state,
    background: bool,
) -> list[Shard]:
    """One pass over ``shards``: make every unfinished one this process can claim (encoding and writing in a
    background thread beside generation); return those it could not (held by another, or taken over from it)."""
    rank, features = state.process_index, builder.info.features
    held: list[Shard] = []
    unfinished: dict[str, tuple[ShardWriter, Claim]] = {}  # opened, not committed: aborted and released on failure

    def write(writer: ShardWriter, rows) -> None:
        with builder.clock.stage("encode"):
            encoded = list(encoders.map(builder.encode, rows.rows))
        with builder.clock.stage("write"):
            writer.write(encoded)
            writer.safety_dropped += rows.dropped
            progress.images += len(rows.rows) + len(rows.dropped)
            store.report_progress(rank, progress)

    def commit(writer: ShardWriter, claim: Claim) -> None:
        """Commit a made shard, unless another process took it over meanwhile (then that one commits it)."""
        if not claims.holds(claim):
            drop(writer)
            return
        with builder.clock.stage("write"):
            writer.commit()
        del unfinished[writer.shard.key]
        claims.release(claim)  # finished: should its file fail verification at export, it is made again at once
        progress.shards += 1
        progress.taken_over += claim.taken_over
        store.report_progress(rank, progress)

    def drop(writer: ShardWriter) -> None:
        writer.abort()
        del unfinished[writer.shard.key]
        progress.images -= len(writer.ids) + len(writer.safety_dropped)
        store.report_progress(rank, progress)
        held.append(writer.shard)

    try:
        with (
            ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="synthdata-encode") as encoders,
            TaskQueue(background=background, max_pending=4) as queue,
        ):
            for shard in shards:
                if store.done(shard):
                    continue
                builder.models()  # loaded before the first claim: no lease runs out while a model loads
                progress.loading_seconds = round(builder.clock.seconds[LOADING], 3)
                claim = claims.take(shard.key)
                if claim is None:
                    held.append(shard)
                    continue
                if store.done(shard, fresh=True):  # finished by another process since this one last looked
                    claims.release(claim)
                    continue
                log.info(
                    "rank %d: writing shard %s (%s/%s, %d images%s)",
                    rank,
                    shard.key,
                    shard.split,
                    shard.class_name,
                    shard.size,
                    ", taken over" if claim.taken_over else "",
                )
                writer = store.open_shard(shard, features)
                unfinished[shard.key] = (writer, claim)
                for rows in builder.shard_rows(shard):
                    queue.submit(write, writer, rows)
                    if not claims.renew(claim):
                        log.warning(
                            "rank %d: shard %s was taken over by another process (this one held it past its "
                            "%g s lease); dropping it",
                            rank,
                            shard.key,
                            claims.lease,
                        )
                        queue.submit(drop, writer)
                        break
                else:
                    queue.submit(commit, writer, claim)
    finally:  # the queue has drained: what is still open was not finished, and another process may take it now
        for writer, claim in unfinished.values():
            writer.abort()
            claims.release(claim)
    return held


class _ProgressBar(threading.Thread):
    """The one progress bar of the build (main process), fed by every process's progress file: O(processes) per
    poll, however many shards are finished. Ended by ``finish`` when every shard is."""

    def __init__(self, store: Store, total: int, processes: int, done_images: int):
        super().__init__(name="synthdata-progress", daemon=True)
        self.store, self.total, self.processes, self.done_images = store, total, processes, done_images
        self.finished = threading.Event()
        self.start()

    def run(self) -> None:
        with tqdm(total=self.total, initial=self.done_images, unit="img", desc="generating", dynamic_ncols=True) as bar:
            while not self.finished.wait(0.5):
                made = sum(p.images for p in self.store.progress_of(self.processes))
                bar.update(min(self.total, self.done_images + made) - bar.n)  # a dropped shard can count twice
            bar.update(self.total - bar.n)

    def finish(self) -> None:
        self.finished.set()
        self.join()
