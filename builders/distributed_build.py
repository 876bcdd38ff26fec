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
from dataclasses import dataclass, field, replace
from typing import Any

from accelerate.utils import broadcast_object_list
from tqdm.auto import tqdm

from builders.builder import LOADING, SyntheticImages
from builders.expansion import resolve_lock
from builders.export import BUILD_OUTPUT, ExportResult, export_dataset
from builders.formats.command import write_formats
from builders.formats.export import FormatReport
from builders.hub import uploads_during_build
from builders.plan import Plan, Shard
from builders.rows import BatchRows
from builders.spec import BuildSpec
from builders.store import Store, output_store
from builders.store.claims import Claim, Claims, lease_seconds
from builders.store.local import DamagedShard, DamagedShards, RankProgress, ShardWriter
from builders.writer_queue import TaskQueue
from eval.summary import DatasetSummary
from synthcore.launch import start_state
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
    formats: list[FormatReport] = field(default_factory=list)  # the formats beside data/ (main process)

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


@dataclass
class _Run:
    """One process's build once started (``_start``): what ``_make`` and ``_finish`` share."""

    spec: BuildSpec
    state: Any
    store: Store
    owned: OwnedDir | None
    builder: SyntheticImages
    plan: Plan
    claims: Claims
    damaged: list[DamagedShard]  # found by the audit at the start (main process)
    done_images: int  # found done at the start (main process)
    to_make: int  # shards to make at the start (main process)
    started: float


def build(spec: BuildSpec) -> BuildReport:
    """Build the dataset of ``spec`` on this process's share of the work: start, make the shards, finish."""
    started = time.perf_counter()
    state = start_state()
    store = output_store(spec.output_dir, state.process_index, BUILD_OUTPUT)  # every rank alike, nothing written
    state.wait_for_everyone()
    with ExitStack() as stack:
        run = _start(spec, state, store, stack, started)
        made, making_seconds = _make(run)
        return _finish(run, made, making_seconds)


def _start(spec: BuildSpec, state, store: Store, stack: ExitStack, started: float) -> _Run:
    """Every rank: claim the output (main process), read or write the prompt lock, check the fingerprint; the main
    process also prepares the output, sets damaged shards aside and counts what is done. Ends with the last
    collective: from here on, no process waits for another."""
    owned = _claim(state, stack, store)
    spec = replace(spec, recipe=resolve_lock(spec.recipe, store, state, owned, spec.overwrite))  # every rank alike
    builder = SyntheticImages.of(spec, state.device)
    fingerprint = builder.fingerprint()
    store.check_fingerprint(fingerprint, spec.overwrite)  # every rank decides alike, before anything is written
    state.wait_for_everyone()
    plan = builder.plan()
    damaged, pending = [], []
    if state.is_main_process:  # the others compute no key up front: each is computed when its shard is scanned
        store.prepare(fingerprint, spec.overwrite)
        damaged = store.audit(list(plan.shards))  # those that fail are set aside, so they count as not done
        stack.enter_context(uploads_during_build(store, spec.recipe.hub))  # hub.push_during_build: until export
        pending = [shard for shard in plan.shards if not store.done(shard)]  # nobody makes any yet
        log.info(
            "plan: %d images in %d shards; %d images found done, %d to make on %d process(es)",
            plan.num_images,
            len(plan.shards),
            plan.num_images - sum(s.size for s in pending),
            sum(s.size for s in pending),
            state.num_processes,
        )
    state.wait_for_everyone()
    claims = Claims(store.claim_files(state.process_index), state.process_index, lease_seconds())
    done_images = plan.num_images - sum(s.size for s in pending) if state.is_main_process else 0
    return _Run(spec, state, store, owned, builder, plan, claims, damaged, done_images, len(pending), started)


def _make(run: _Run) -> tuple[RankProgress, float]:
    """Claim and make shards until every one is finished (the main process drives the progress bar); what this
    process made, and how long making took."""
    making = time.perf_counter()
    monitor = None
    if run.state.is_main_process:
        if run.to_make:  # loaded before the bar opens: the loading bar is not nested under it, and its closing
            run.builder.models()  # (a cursor-up) cannot run into the next log line
        monitor = _ProgressBar(run.store, run.plan.num_images, run.state.num_processes, run.done_images)
    shards = spread(run.plan.shards, run.state)
    made = write_shards(run.builder, run.store, run.claims, shards, run.state, run.spec.background)
    if monitor:
        monitor.finish()
    return made, time.perf_counter() - making


def _finish(run: _Run, made: RankProgress, making_seconds: float) -> BuildReport:
    """Main process: every process's progress, the export (damaged shards made again), the run report. The other
    processes are done: they do not wait through the export."""
    main, plan, store = run.state.is_main_process, run.plan, run.store
    exported, progress, damaged, done_images, formats = None, [made], run.damaged, run.done_images, []
    if main:
        progress = _every_process_progress(store, run.state.num_processes, run.to_make)
        exported, remade = _export(run)
        formats = write_formats(run.owned, run.builder.recipe)  # imagefolder, webdataset: from the data/ published
        damaged, done_images = damaged + remade, done_images - sum(bad.shard.size for bad in remade)
    report = BuildReport(
        output_dir=store.location,
        counts=plan.counts(),
        images_planned=plan.num_images,
        images_found_done=done_images,
        images_generated=plan.num_images - done_images if main else made.images,
        safety_dropped=[i for shard in plan.shards for i in store.safety_dropped(shard)] if main else [],
        damaged=damaged,
        seconds=time.perf_counter() - run.started,
        summary=exported.summary if exported else None,
        processes=run.state.num_processes,
        shards_per_process=[p.shards for p in progress],
        taken_over_per_process=[p.taken_over for p in progress],
        making_seconds=making_seconds,
        loading_seconds_per_process=[p.loading_seconds for p in progress],
        formats=formats,
    )
    if main:
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


def _export(run: _Run) -> tuple[ExportResult, list[DamagedShard]]:
    """Export the dataset. Shards that fail their checksum there (flipped bytes, say) were set aside: they are made
    again on this process and the export runs again; a second failure is an error."""
    builder, store = run.builder, run.store
    args = (builder.recipe, builder.info.features, builder.provenance(), store, run.owned, run.plan)
    try:
        return export_dataset(*args), []
    except DamagedShards as err:
        write_shards(builder, store, run.claims, [bad.shard for bad in err.damaged], run.state, run.spec.background)
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
    maker = _ShardMaker(builder, store, claims, state.process_index)
    while True:
        held = maker.write_pass(shards, background)
        shards = [shard for shard in held if not store.done(shard, fresh=True)]
        if not shards:
            break
        time.sleep(claims.poll_seconds)
    if builder.clock.seconds:
        log.info("rank %d: time per stage: %s", state.process_index, builder.clock)
    return maker.progress


@dataclass
class _ShardMaker:
    """What one process made of the shards it claimed: the progress it reports, the shards it found held by
    another process, the shard jobs still open (aborted and released should the pass fail)."""

    builder: SyntheticImages
    store: Store
    claims: Claims
    rank: int
    progress: RankProgress = field(default_factory=RankProgress)
    held: list[Shard] = field(default_factory=list)
    unfinished: dict[str, _ShardJob] = field(default_factory=dict)

    def write_pass(self, shards: Iterable[Shard], background: bool) -> list[Shard]:
        """One pass over ``shards``: make every unfinished one this process can claim (encoding and writing in a
        background thread beside generation); return those it could not (held by another, or taken over from it)."""
        self.held = []
        try:
            with (
                ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="synthdata-encode") as encoders,
                TaskQueue(background=background, max_pending=4) as queue,
            ):
                for shard in shards:
                    if not self.store.done(shard) and (job := self._claim(shard, encoders)):
                        self._make(job, queue)
        finally:  # the queue has drained: what is still open was not finished, and another process may take it now
            for job in list(self.unfinished.values()):
                job.abort()
        return self.held

    def _claim(self, shard: Shard, encoders: ThreadPoolExecutor) -> _ShardJob | None:
        """The shard's job, once claimed and not finished by another process since this one last looked."""
        self.builder.models()  # loaded before the first claim: no lease runs out while a model loads
        self.progress.loading_seconds = round(self.builder.clock.seconds[LOADING], 3)
        claim = self.claims.take(shard.key)
        if claim is None:
            self.held.append(shard)
            return None
        if self.store.done(shard, fresh=True):
            self.claims.release(claim)
            return None
        log.info(
            "rank %d: writing shard %s (%s/%s, %d images%s)",
            self.rank,
            shard.key,
            shard.split,
            shard.class_name,
            shard.size,
            ", taken over" if claim.taken_over else "",
        )
        job = _ShardJob(self, self.store.open_shard(shard, self.builder.info.features), claim, encoders)
        self.unfinished[shard.key] = job
        return job

    def _make(self, job: _ShardJob, queue: TaskQueue) -> None:
        """Generate the shard's batches, handing each to the writer; commit at the end, or drop the shard when
        another process took it over meanwhile."""
        for rows in self.builder.shard_rows(job.writer.shard):
            queue.submit(job.write, rows)
            if not self.claims.renew(job.claim):
                log.warning(
                    "rank %d: shard %s was taken over by another process (this one held it past its %g s lease); "
                    "dropping it",
                    self.rank,
                    job.writer.shard.key,
                    self.claims.lease,
                )
                queue.submit(job.drop)
                return
        queue.submit(job.commit)

    def report(self) -> None:
        self.store.report_progress(self.rank, self.progress)


@dataclass
class _ShardJob:
    """One claimed shard being made: its writer and its claim. Its methods run on the writer thread, in order."""

    maker: _ShardMaker
    writer: ShardWriter
    claim: Claim
    encoders: ThreadPoolExecutor

    def write(self, rows: BatchRows) -> None:
        clock = self.maker.builder.clock
        with clock.stage("encode"):
            encoded = list(self.encoders.map(self.maker.builder.encode, rows.rows))
        with clock.stage("write"):
            self.writer.write(encoded)
            self.writer.safety_dropped += rows.dropped
            self.maker.progress.images += len(rows.rows) + len(rows.dropped)
            self.maker.report()

    def commit(self) -> None:
        """Commit the made shard, unless another process took it over meanwhile (then that one commits it)."""
        maker = self.maker
        if not maker.claims.holds(self.claim):
            self.drop()
            return
        with maker.builder.clock.stage("write"):
            self.writer.commit()
        del maker.unfinished[self.writer.shard.key]
        maker.claims.release(self.claim)  # finished: should its file fail verification at export, it is made again
        maker.progress.shards += 1
        maker.progress.taken_over += self.claim.taken_over
        maker.report()

    def drop(self) -> None:
        """Give the shard up (taken over): its file goes, its images no longer count, it is looked at again."""
        self.writer.abort()
        del self.maker.unfinished[self.writer.shard.key]
        self.maker.progress.images -= len(self.writer.ids) + len(self.writer.safety_dropped)
        self.maker.report()
        self.maker.held.append(self.writer.shard)

    def abort(self) -> None:
        """The pass failed before the shard was finished: its file goes and its claim is released."""
        self.writer.abort()
        self.maker.claims.release(self.claim)
        self.maker.unfinished.pop(self.writer.shard.key, None)


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
