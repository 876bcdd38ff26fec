"""Shards handed out one at a time through claim files, so every process stays busy and a lost one's work is taken.

Each process of a build scans the plan's shards (from its own place in the list, so processes start apart), claims a
shard that is neither finished nor claimed, makes it, and scans on; it stops when every shard is finished. A process
that is slow or lost (a hung GPU, a node gone, ``kill -STOP``) stops renewing its claim; once the claim's lease has
run out, another process takes the shard over. No process waits for another except for a shard in hand, and the work
each one gets is as small as a shard (one batch in small plans: ``plan.batches_per_shard``).

Files, in ``<out>/.synthdata/claims/``::

    <shard key>      the first claim of a shard
    <shard key>.<n>  its n-th takeover

Each holds JSON: the holder's host, rank and pid, and when its lease ends (``expires``, seconds since the epoch, so
the hosts' clocks must agree to well within a lease). A claim file is created whole and only if it is not there
(written under a private name, then ``os.link``-ed to its own: atomic, also on NFS), so of several processes trying
to take the same shard, or to take over the same expired claim, exactly one wins. Only its holder rewrites a claim
(renewal: ``os.replace``), and a holder learns that its shard was taken over when the next takeover's file exists
(checked at every renewal and before the shard is committed); it then drops the shard. The shard's own file marks
it finished (a shard is committed by a rename: ``builders.store.local``); claims are never deleted during a build. One
build runs at a time (the output directory's lock), so the claims found when a build starts are a killed run's:
the main process removes them before any process scans.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from typing import Protocol

LEASE_VARIABLE = "SYNTHDATA_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 600.0
LEASE_LIMITS = (1.0, 86400.0)


class LeaseSettingError(ValueError):
    """``SYNTHDATA_LEASE_SECONDS`` is not a number of seconds in range."""


def lease_seconds(environ: dict[str, str] | None = None) -> float:
    """How long a claim lasts without renewal: ``SYNTHDATA_LEASE_SECONDS`` (1 to 86400), default 600. It must outlast
    the slowest batch (the first one compiles with ``model.compile``); a lost process's shard waits this long."""
    text = (os.environ if environ is None else environ).get(LEASE_VARIABLE, "").strip()
    if not text:
        return DEFAULT_LEASE_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    low, high = LEASE_LIMITS
    if not low <= value <= high:  # also refuses nan
        raise LeaseSettingError(
            f"{LEASE_VARIABLE}={text!r}: expected a number of seconds from {low:.0f} to {high:.0f} (default "
            f"{DEFAULT_LEASE_SECONDS:.0f}): how long a process's claim on a shard lasts without renewal before "
            "another process takes the shard over"
        )
    return value


@dataclass(frozen=True)
class Holder:
    """What a claim file says: who holds the shard, and until when."""

    host: str
    rank: int
    pid: int
    expires: float


@dataclass
class Claim:
    """A shard this process holds: its key, the takeover it holds (0: the first claim), when it last renewed."""

    key: str
    generation: int
    renewed: float

    @property
    def taken_over(self) -> bool:
        return self.generation > 0


class ClaimFiles(Protocol):
    """Where the claim files of a build live: the output directory (``LocalClaimFiles``) or, for an output in
    object storage, the store itself (``builders.store.remote``), so processes on machines that share no file system
    still see each other's claims."""

    def read(self, name: str) -> str | None:
        """The claim file's text; None when there is none."""

    def create(self, name: str, text: str) -> bool:
        """Create the claim file whole unless it exists (False: another process won it)."""

    def replace(self, name: str, text: str) -> None:
        """Rewrite a claim file this process holds, in one step."""


class Claims:
    """The claim files of one output directory, as seen by one process (``rank``)."""

    def __init__(self, files: ClaimFiles, rank: int, lease: float, clock: Callable[[], float] = time.time):
        self.files = files
        self.rank = rank
        self.lease = lease
        self.clock = clock
        self.host = socket.gethostname()

    @property
    def poll_seconds(self) -> float:
        """How often a process with nothing to take looks again at the shards others hold."""
        return min(0.25, self.lease / 8)

    @staticmethod
    def name(key: str, generation: int) -> str:
        return key if generation == 0 else f"{key}.{generation}"

    def holder(self, key: str) -> tuple[int, Holder | None]:
        """The latest claim of ``key`` (-1 when there is none) and what it says (None when unreadable)."""
        generation, text = -1, None
        while (found := self.files.read(self.name(key, generation + 1))) is not None:
            generation, text = generation + 1, found
        if text is None:
            return generation, None
        try:
            return generation, Holder(**json.loads(text))
        except (ValueError, TypeError):
            return generation, None

    def take(self, key: str) -> Claim | None:
        """Claim the shard ``key`` when nobody holds it or its holder's lease has run out (a takeover); None when
        another process holds it, or won the race to take it."""
        generation, holder = self.holder(key)
        now = self.clock()
        if generation >= 0 and holder is not None and holder.expires > now:
            return None
        claim = Claim(key, generation + 1, now)
        created = self.files.create(self.name(key, claim.generation), self._holder_json(now + self.lease))
        return claim if created else None

    def holds(self, claim: Claim) -> bool:
        """Whether the shard is still this process's: nobody took it over."""
        return self.files.read(self.name(claim.key, claim.generation + 1)) is None

    def renew(self, claim: Claim) -> bool:
        """Extend the lease when a quarter of it has passed since the last renewal (called after every batch);
        False when another process took the shard over meanwhile: this one must drop it."""
        now = self.clock()
        if now - claim.renewed < self.lease / 4:
            return True
        if not self.holds(claim):
            return False
        self.files.replace(self.name(claim.key, claim.generation), self._holder_json(now + self.lease))
        claim.renewed = now
        return True

    def release(self, claim: Claim) -> None:
        """Give the shard up at once (this process failed before finishing it): its lease ends now, so another
        process may take it over without waiting."""
        if self.holds(claim):
            with suppress(OSError):  # the failure may be the disk's; the lease then runs out by itself
                self.files.replace(self.name(claim.key, claim.generation), self._holder_json(0.0))

    def _holder_json(self, expires: float) -> str:
        return json.dumps(asdict(Holder(self.host, self.rank, os.getpid(), expires)))
