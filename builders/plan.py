"""The job plan: a pure function from a recipe to every image to make, grouped into batches and shards.

Nothing here touches a GPU or a model. The plan fixes, before any work starts:
- which prompt each image uses (with ``prompt_disjoint``, a prompt's split is a function of the prompt alone:
  ``Recipe.split_prompts``) and its seed, derived from the global seed and the image's identity
  (split, class, prompt, occurrence), so changing one class never moves another class's seeds, and a seed never
  depends on which process makes the image;
- the batches (always within one split and class, so a per-class override stays one pipeline call), so the
  numerics of every image are the same whatever the number of processes;
- the shards (consecutive batches of one split and class), the unit of distribution, resume and export. A
  shard's key hashes everything that decides its content, so a finished shard can be recognised and reused.

The plan is arithmetic, never a list of images: a shard is (split, class, index range, batch size), and its jobs,
batches and key are computed from the recipe when they are asked for. Making a plan costs O(splits) whatever its
size, counts and the dry run's estimate come from the recipe's counts, and a process spends time only on the shards
it touches. Keys are the exception that stays O(images): each hashes its shard's jobs, so that a finished shard is
recognised by content; asking every key of a plan (what a resume check does) hashes every job once, about a
microsecond each.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from builders.content import content_entries
from builders.recipe import Recipe

# Classes whose prompts (and their JSON) are kept between shards: a plan's shards come class by class, so a few
# are enough, and memory stays flat however many classes and prompts the recipe has.
CLASSES_KEPT = 64


@dataclass(frozen=True)
class Job:
    """One image to make, with everything that decides its pixels."""

    id: str
    split: str
    label: int
    class_name: str
    index: int
    prompt: str
    negative_prompt: str
    guidance_scale: float
    seed: int
    # Real-image guidance (``docs/guidance.md``): the reference file this image starts from, its SHA-256 and the
    # strength; ``None`` for a class without references.
    reference: str | None = None
    reference_sha256: str | None = None
    strength: float | None = None

    def regeneration_seed(self, global_seed: int, attempt: int, reason: str = "regenerate") -> int:
        """A fresh seed for an image the safety checker flagged (or, ``reason`` "refilter", that failed a score
        filter), still a pure function of the job."""
        return derive_seed(global_seed, self.split, self.class_name, self.prompt, self.index, reason, attempt)


@dataclass(frozen=True)
class Batch:
    jobs: tuple[Job, ...]

    @property
    def guidance_scale(self) -> float:
        """The batch's one guidance value; a batch of a guidance sweep holds several (see each job's)."""
        values = {job.guidance_scale for job in self.jobs}
        if len(values) > 1:
            raise ValueError(f"the batch mixes guidance values {sorted(values)} (a guidance sweep): read each job's")
        return self.jobs[0].guidance_scale


@dataclass(frozen=True, slots=True)
class Shard:
    """Images ``start`` to ``stop - 1`` of one split and class, made in batches of ``batch_size`` from ``start``
    (the last may be short). Its jobs and batches are computed each time they are asked for, never kept; its key is
    computed once, when first asked for. Slots keep it at about 150 bytes with its key (a plan of 10^8 images at
    256 per shard holds 393,000 of them)."""

    split: str
    label: int
    class_name: str
    start: int
    stop: int
    batch_size: int
    source: JobSource = field(repr=False)
    _key: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def jobs(self) -> list[Job]:
        return self.source.jobs(self)

    @property
    def ids(self) -> list[str]:
        """Its jobs' ids, without computing their prompts and seeds (what verifying a shard's record needs)."""
        return [job_id(self.split, self.class_name, index) for index in range(self.start, self.stop)]

    @property
    def batches(self) -> tuple[Batch, ...]:
        jobs = self.jobs
        return tuple(Batch(tuple(jobs[i : i + self.batch_size])) for i in range(0, len(jobs), self.batch_size))

    @property
    def key(self) -> str:
        if self._key is None:
            object.__setattr__(self, "_key", self.source.key(self))  # a cache: the key is a function of the fields
        return self._key


@dataclass(frozen=True)
class Plan:
    """Shards in plan order. ``make_plan`` gives a recipe's whole plan (a ``RecipePlan``, which answers from the
    recipe's counts); a Plan of chosen shards (those with rows, say) answers the same questions from its shards."""

    shards: Sequence[Shard]

    @property
    def num_images(self) -> int:
        return sum(shard.size for shard in self.shards)

    @property
    def splits(self) -> list[str]:
        return list(dict.fromkeys(shard.split for shard in self.shards))

    def shards_of(self, split: str) -> Sequence[Shard]:
        return [shard for shard in self.shards if shard.split == split]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class."""
        counts: dict[str, dict[str, int]] = {}
        for shard in self.shards:
            per_class = counts.setdefault(shard.split, {})
            per_class[shard.class_name] = per_class.get(shard.class_name, 0) + shard.size
        return counts


class RecipePlan(Plan):
    """A recipe's whole plan: sizes and counts in O(splits × classes) from the recipe, shards made on demand."""

    shards: PlannedShards

    @property
    def num_images(self) -> int:
        return len(self.shards.class_names) * sum(self.shards.counts.values())

    @property
    def splits(self) -> list[str]:
        return list(self.shards.splits)

    def shards_of(self, split: str) -> Sequence[Shard]:
        return self.shards.of_split(split)

    def counts(self) -> dict[str, dict[str, int]]:
        return {split: dict.fromkeys(self.shards.class_names, count) for split, count in self.shards.counts.items()}


class PlannedShards(Sequence[Shard]):
    """Every shard of a recipe's plan, in plan order (split, then class, then image index), computed from its
    position: each split holds, for each class in turn, ``ceil(count / images_per_shard)`` shards. A shard is made
    when first asked for and kept (about 190 bytes with its key; its jobs are not kept), so every pass over the
    plan (resume check, export) sees the same objects and computes each key once."""

    def __init__(self, source: JobSource):
        recipe = source.recipe
        self.source = source
        self.class_names = source.class_names
        self.counts = dict(recipe.splits)  # images per class in each split
        self.splits = list(self.counts)
        self.batch_size = recipe.generation.batch_size
        self.images_per_shard = {
            split: batches_per_shard(recipe, split) * self.batch_size for split in self.counts
        }  # per split: a small split gets smaller shards
        self.per_class = {split: -(-count // self.images_per_shard[split]) for split, count in self.counts.items()}
        self._first = [0]  # the index of each split's first shard, then the number of shards
        for split in self.counts:
            self._first.append(self._first[-1] + len(self.class_names) * self.per_class[split])
        self._made: list[Shard | None] = []  # by position, allocated when the first shard is asked for

    def __len__(self) -> int:
        return self._first[-1]

    def __getitem__(self, index):  # an int gives a Shard, a slice a list of them
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"shard {index} of a plan of {len(self)}")
        if not self._made:
            self._made = [None] * len(self)
        shard = self._made[index]
        if shard is None:
            shard = self._made[index] = self._shard(index)
        return shard

    def __iter__(self) -> Iterator[Shard]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlannedShards) and self.source == other.source

    __hash__ = None  # type: ignore[assignment]

    def of_split(self, split: str) -> list[Shard]:
        position = self.splits.index(split)
        return self[self._first[position] : self._first[position + 1]]

    def _shard(self, index: int) -> Shard:
        position = bisect.bisect_right(self._first, index) - 1
        split = self.splits[position]
        label, part = divmod(index - self._first[position], self.per_class[split])
        start = part * self.images_per_shard[split]
        stop = min(start + self.images_per_shard[split], self.counts[split])
        return Shard(split, label, self.class_names[label], start, stop, self.batch_size, self.source)


# Shards a split should have at least, so that the processes of a build can share its work evenly (a process takes
# one shard at a time): a split with fewer full shards of ``output.shard_size`` gets smaller ones.
FEWEST_SHARDS = 64


def batches_per_shard(recipe: Recipe, split: str) -> int:
    """Batches in each shard of ``split``: ``output.shard_size`` in whole batches, halved (down to one batch) while
    the split would have fewer than ``FEWEST_SHARDS`` full shards. Work is handed out a shard at a time, so a split of
    a few large shards keeps most processes idle (fox_dog: 4 shards of 100, 100, 20 and 20 images made 2 processes
    1.2x faster than one); with one-batch shards, N processes share 32 batches evenly. Halving (rather than any
    size) keeps the sizes few: raising a count changes a split's shards (their keys, so they are made again) only
    when its batches cross a doubling of ``FEWEST_SHARDS`` shards. Per split, so adding a split changes no other."""
    per_shard = max(1, recipe.output.shard_size // recipe.generation.batch_size)
    batches = len(recipe.class_names) * -(-recipe.splits[split] // recipe.generation.batch_size)
    while per_shard > 1 and batches < FEWEST_SHARDS * per_shard:
        per_shard //= 2
    return per_shard


class JobSource:
    """What every shard of one plan shares: the recipe, and the fingerprint its keys hash. It computes the jobs and
    the key of any shard; the per-class data they need (prompts, their JSON) is kept for the last few classes only.
    """

    def __init__(self, recipe: Recipe, fingerprint: dict[str, Any]):
        self.recipe = recipe
        self.class_names = recipe.class_names
        self.fingerprint_text = _dumps(fingerprint)
        # The bytes a key hashes are those of json.dumps([fingerprint, batches], ...): the fingerprint (which grows
        # with the number of classes) is serialized and hashed once, not once per shard.
        self._key_prefix = hashlib.sha256(f"[{self.fingerprint_text}, ".encode())
        self._streams = functools.lru_cache(maxsize=CLASSES_KEPT)(self._class_streams)

    def __eq__(self, other: object) -> bool:
        return self is other or (
            isinstance(other, JobSource)
            and self.fingerprint_text == other.fingerprint_text
            and self.recipe == other.recipe
        )

    def __hash__(self) -> int:
        return hash(self.fingerprint_text)

    def __reduce__(self):  # pickled without its cache (shards travel to datasets' worker processes)
        return JobSource, (self.recipe, json.loads(self.fingerprint_text))

    def jobs(self, shard: Shard) -> list[Job]:
        stream = self._streams(shard.label)[shard.split]
        return [stream.job(index) for index in range(shard.start, shard.stop)]

    def key(self, shard: Shard) -> str:
        """SHA-256 of ``json.dumps([fingerprint, batches], ensure_ascii=False, sort_keys=True)``, each batch a list
        of its jobs' ``[id, prompt, negative_prompt, guidance_scale, seed]``, followed for a class with reference
        images by ``reference, reference_sha256, strength``: the bytes never change, so the finished shards of
        earlier builds keep their keys, and replacing one reference file changes the keys of exactly the shards
        holding images made from it. Written out piece by piece (the same bytes), for speed."""
        stream = self._streams(shard.label)[shard.split]
        batches = (
            ", ".join(map(stream.key_json, range(first, min(first + shard.batch_size, shard.stop))))
            for first in range(shard.start, shard.stop, shard.batch_size)
        )
        digest = self._key_prefix.copy()
        digest.update(("[[" + "], [".join(batches) + "]]]").encode())
        return digest.hexdigest()[:24]

    def _class_streams(self, label: int) -> dict[str, _Stream]:
        class_name = self.class_names[label]
        return {
            split: _Stream(self.recipe, split, label, class_name, prompts)
            for split, prompts in self.recipe.split_prompts(class_name).items()
        }


class _Stream:
    """The images of one split and class: any image's prompt, guidance and seed in O(1), and its job as a shard key
    hashes it.

    Prompts are taken in turn, ``images_per_prompt`` consecutive images each. A class's prompts are distinct
    (``Recipe.prompts_of`` drops repeats), so the occurrence of an image's prompt (which its seed hashes) is
    arithmetic too: the full turns before it, times ``images_per_prompt``, plus its place within its group. With a
    guidance sweep of k values, the image takes value ``(prompt position + occurrence) mod k``: consecutive images
    and consecutive uses of one prompt step through the values, so every prompt meets every value. With reference
    images, the image starts from the reference ``derive_seed(seed, split, class, index, "reference") mod n`` of the
    class's n references by name: a function of its identity alone.
    """

    def __init__(self, recipe: Recipe, split: str, label: int, class_name: str, prompts: list[str]):
        self.split, self.label, self.class_name, self.prompts = split, label, class_name, prompts
        self.images_per_prompt = recipe.generation.images_per_prompt
        self.negative_prompt = recipe.negative_prompt_of(class_name)
        self.guidance_scales = recipe.guidance_scales_of(class_name)
        # derive_seed's JSON up to the occurrence, and a key entry's JSON around the index, guidance and seed.
        head = f"[{_json(recipe.seed)}, {_json(split)}, {_json(class_name)}, "
        self._seed_heads = [f"{head}{_json(prompt)}, " for prompt in prompts]
        self._id_head = "[" + _json(f"{split}/{class_name}/")[:-1]
        self._key_middles = [f'", {_json(prompt)}, {_json(self.negative_prompt)}, ' for prompt in prompts]
        self._guidance_json = [f"{_json(value)}, " for value in self.guidance_scales]
        self.seed, self.references = recipe.seed, recipe.references_of(class_name)
        self.strength = recipe.strength_of(class_name) if self.references else None
        self._reference_json = [
            f", {_json(name)}, {_json(sha)}, {_json(self.strength)}" for name, sha in self.references
        ]

    def reference(self, index: int) -> int | None:
        """The position of the ``index``-th image's reference among the class's (``None``: the class has none)."""
        if not self.references:
            return None
        return derive_seed(self.seed, self.split, self.class_name, index, "reference") % len(self.references)

    def place(self, index: int) -> tuple[int, int, int]:
        """The position of the ``index``-th image's prompt, of its guidance value, and its seed (``derive_seed`` of
        its identity)."""
        group, within = divmod(index, self.images_per_prompt)
        turn, position = divmod(group, len(self.prompts))
        occurrence = turn * self.images_per_prompt + within
        digest = hashlib.sha256(f"{self._seed_heads[position]}{occurrence}]".encode()).digest()
        return position, (position + occurrence) % len(self.guidance_scales), int.from_bytes(digest[:8], "big") >> 1

    def job(self, index: int) -> Job:
        position, guidance, seed = self.place(index)
        reference = self.reference(index)
        name, sha = (None, None) if reference is None else self.references[reference]
        return Job(
            id=job_id(self.split, self.class_name, index),
            split=self.split,
            label=self.label,
            class_name=self.class_name,
            index=index,
            prompt=self.prompts[position],
            negative_prompt=self.negative_prompt,
            guidance_scale=self.guidance_scales[guidance],
            seed=seed,
            reference=name,
            reference_sha256=sha,
            strength=self.strength,
        )

    def key_json(self, index: int) -> str:
        position, guidance, seed = self.place(index)
        reference = self.reference(index)
        guided = "" if reference is None else self._reference_json[reference]
        return f"{self._id_head}{index:06d}{self._key_middles[position]}{self._guidance_json[guidance]}{seed}{guided}]"


def guidance_counts(images: int, prompts: int, images_per_prompt: int, values: int) -> list[int]:
    """How many of a stream's first ``images`` images take each guidance value (``_Stream.place``), in O(values²)
    whatever the count: the dry run's figures per value for plans of any size.

    Image i is (turn t, prompt position q, place w within its group); its value is ``(q + w + t·m) mod k``. A full
    turn gives every (q, w) once, so its residues are the cyclic convolution of q's and w's, shifted by ``t·m``;
    the last, partial turn is full groups, then one partial group."""
    k, m = values, images_per_prompt
    turn_size = prompts * m
    full_turns, rest = divmod(images, turn_size)
    counts = [0] * k
    per_turn = _convolve(_residues(prompts, k), _residues(m, k))
    for shift_turns, turns in enumerate(_residues(full_turns, k)):
        _add_shifted(counts, per_turn, shift_turns * m, turns)
    groups, partial = divmod(rest, m)
    _add_shifted(counts, _convolve(_residues(groups, k), _residues(m, k)), full_turns * m, 1)
    _add_shifted(counts, _residues(partial, k), full_turns * m + groups, 1)
    return counts


def _residues(length: int, k: int) -> list[int]:
    """How many of 0..length-1 leave each remainder mod k."""
    return [max(0, (length - r + k - 1) // k) for r in range(k)]


def _convolve(a: list[int], b: list[int]) -> list[int]:
    k = len(a)
    return [sum(a[i] * b[(r - i) % k] for i in range(k)) for r in range(k)]


def _add_shifted(counts: list[int], add: list[int], shift: int, times: int) -> None:
    k = len(counts)
    for r, count in enumerate(add):
        counts[(r + shift) % k] += count * times


def job_id(split: str, class_name: str, index: int) -> str:
    return f"{split}/{class_name}/{index:06d}"


def derive_seed(global_seed: int, *identity: Any) -> int:
    """A 63-bit seed from the global seed and an identity, stable across Python versions and machines."""
    digest = hashlib.sha256(json.dumps([global_seed, *identity], ensure_ascii=False).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def content_fingerprint(recipe: Recipe, device_type: str, dtype_name: str) -> dict[str, Any]:
    """The recipe fields (and resolved runtime choices) that decide the content of every finished shard: those
    marked so in the recipe's schema (``builders.content``), the dtype the build resolved, and the device type.

    Per-image fields (prompt, negative prompt, guidance, seed) are not here: they are in each shard's key, so
    changing one class's prompts regenerates only that class's shards. What is here applies to all shards:
    a finished shard made under different values cannot be mixed into the same dataset.
    """
    entries = content_entries(recipe, {"model.dtype": dtype_name}) | {"device_type": device_type}
    if regeneration := recipe.filters.regeneration():  # the thresholds decide the images only when regenerating
        entries["filters.regeneration"] = regeneration
    return dict(sorted(entries.items(), key=lambda entry: _recorded_position(entry[0])))


# The order in which builds recorded the fingerprint's entries (``fingerprint.json``, ``build_info.json``) before
# they were derived from the schema, kept so those files keep their bytes; entries added since follow, in field order.
RECORDED_ORDER = (
    "seed",
    "class_names",
    "model.id",
    "model.revision",
    "model.pipeline",
    "model.loras",
    "model.max_sequence_length",
    "model.vae",
    "model.dtype",
    "model.scheduler",
    "model.safety_checker",
    "model.safety_checker_id",
    "model.on_flagged",
    "model.max_regenerations",
    "model.compile",
    "model.channels_last",
    "model.attention",
    "device_type",
    "generation.num_inference_steps",
    "generation.height",
    "generation.width",
    "output.image_format",
    "output.png_compress_level",
    "output.quality",
    "scoring",
    "label_texts",
    "imagenet_classes",
)


def _recorded_position(key: str) -> int:
    return RECORDED_ORDER.index(key) if key in RECORDED_ORDER else len(RECORDED_ORDER)


def prompts_with_images(recipe: Recipe, split: str, prompts: list[str]) -> list[str]:
    """The prompts (of the split's ``prompts`` of a class) that its images use: the first ones, where there are
    more prompts than the count asks for (prompts are taken in turn, ``images_per_prompt`` images each)."""
    return prompts[: -(-recipe.splits[split] // recipe.generation.images_per_prompt)]


def make_plan(recipe: Recipe, fingerprint: dict[str, Any]) -> RecipePlan:
    """A recipe's plan, in plan order: split, then class, then image index. Nothing is computed per image here."""
    return RecipePlan(PlannedShards(JobSource(recipe, fingerprint)))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
