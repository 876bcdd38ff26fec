"""Pushing a folder to the Hugging Face Hub, the same way for a dataset and a classifier.

Everything goes through huggingface_hub's own API (``create_repo``, ``upload_folder``, ``upload_file``) and its own
token resolution (``HF_TOKEN``, ``hf auth login``). ``upload_folder`` is the resumable path for large folders: with
``hf_xet`` installed (huggingface_hub's default) it streams the files, commits in several batches to stay within the
Hub's limits, and a re-run resumes (committed files are skipped, uploaded bytes deduplicated). huggingface_hub 2.x
has no ``upload_large_folder``: this is its successor. The token is never written or logged by us, and every message
that may quote a server's reply goes through ``scrub``. A failed push raises ``PushError``; both command lines
turn it into one message and exit code ``PUSH_FAILED`` (3), and nothing local has changed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from synthcore.outdir import WORK_DIR

log = logging.getLogger("synthdata.hub")

PUSH_FAILED = 3


class PushError(RuntimeError):
    """The push did not happen (or not completely); the local files are untouched."""


def scrub(text: str) -> str:
    """``text`` with every token we could be using replaced by ``<token>`` (a server's reply may echo it)."""
    for token in {get_token(), os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")}:
        if token:
            text = text.replace(token, "<token>")
    return text


def advice(err: Exception) -> str:
    """What to do about a failed call to the Hub."""
    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set: unset it to push."
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, HfHubHTTPError) and status == 401:
        return "The token was refused: log in again with `hf auth login` or set a valid HF_TOKEN."
    if isinstance(err, HfHubHTTPError) and status == 403:
        return "The token may not write there: use a write token of the repo's owner (or an organisation member's)."
    return "Check the network connection (and HF_ENDPOINT if set)."


def describe_error(err: Exception) -> str:
    """The error's type and message, scrubbed of the token."""
    return scrub(f"{type(err).__name__}: {err}".rstrip("."))


def push_folder(
    folder: Path,
    repo_id: str,
    repo_type: str,
    private: bool,
    commit_message: str,
    ignore_patterns: list[str] | None = None,
    delete_patterns: list[str] | None = None,
    card: str | None = None,
) -> str:
    """Create the repo if needed and upload ``folder``; ``card``, when given, is uploaded as the repo's
    ``README.md`` in place of the local one (which is left as it is). Returns the repo's URL."""
    what = f"the Hub {repo_type} {repo_id}"
    if get_token() is None:
        raise PushError(
            f"cannot push to {what}: no Hugging Face token found. Set HF_TOKEN or run `hf auth login` "
            "(a token with write access)."
        )
    api = HfApi()
    ignore = [f"{WORK_DIR}/**", *(ignore_patterns or []), *(["README.md"] if card is not None else [])]
    try:
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type=repo_type,
            folder_path=folder,
            ignore_patterns=ignore,
            delete_patterns=delete_patterns,
            commit_message=commit_message,
        )
        if card is not None:
            api.upload_file(
                path_or_fileobj=card.encode("utf-8"),
                path_in_repo="README.md",
                repo_id=repo_id,
                repo_type=repo_type,
                commit_message=f"{commit_message}: card",
            )
    except Exception as err:  # noqa: BLE001 - any failure of the Hub client is reported the same way
        log.debug("push failed: %s", describe_error(err))
        raise PushError(f"cannot push to {what}: {describe_error(err)}. {advice(err)}") from None
    return str(url)


# -- uploads while a build runs ----------------------------------------------------------------------------------
BUILDING = "building"  # the repo folder finished shards go to while the build runs; the final push removes it
UPLOAD_EVERY = 60.0  # seconds between two rounds of uploads


class BuildingUploader(threading.Thread):
    """Uploads the finished files of ``folder`` (``pattern``) to ``building/`` of a Hub repo, a commit every
    ``interval`` seconds with the files finished since the last, while a build makes more. The final push then
    finds their bytes on the Hub already (Xet storage deduplicates by content: they are not sent again), so the
    upload ends minutes after the last image instead of starting then.

    Never fails the build: a round that fails (network, Hub outage) is logged and retried at the next one, and
    whatever it did not send goes with the final push. Files already in ``building/`` (a resumed build) are not sent
    again. Files must be complete under their final names (shards are renamed into place)."""

    def __init__(
        self,
        folder: Path,
        repo_id: str,
        repo_type: str,
        private: bool,
        interval: float = UPLOAD_EVERY,
        pattern: str = "*.parquet",
    ):
        super().__init__(name="synthdata-hub-uploads", daemon=True)
        self.folder, self.repo_id, self.repo_type, self.private = Path(folder), repo_id, repo_type, private
        self.interval, self.pattern = interval, pattern
        self.uploaded: set[str] | None = None  # names in building/, once the repo is known to exist
        self.commits = 0
        self.stopping = threading.Event()
        self.api = HfApi()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.upload_round()
            except Exception as err:  # noqa: BLE001 - any failure of the Hub client: retried next round
                log.warning(
                    "uploading finished shards to %s/%s failed (%s); retrying in %.0f s (the final push sends "
                    "whatever is not there)",
                    self.repo_id,
                    BUILDING,
                    describe_error(err),
                    self.interval,
                )

    def upload_round(self) -> None:
        """One commit of every finished file not yet in ``building/`` (none when there is none)."""
        if self.uploaded is None:
            self.api.create_repo(self.repo_id, repo_type=self.repo_type, private=self.private, exist_ok=True)
            self.uploaded = self._already_there()
        new = sorted(path for path in self.folder.glob(self.pattern) if path.name not in self.uploaded)
        if not new:
            return
        self.api.create_commit(
            self.repo_id,
            repo_type=self.repo_type,
            operations=[CommitOperationAdd(f"{BUILDING}/{path.name}", path) for path in new],
            commit_message=f"Building: {len(new)} more finished shard(s)",
        )
        self.uploaded |= {path.name for path in new}
        self.commits += 1
        log.info("uploaded %d finished shard(s) to %s/%s", len(new), self.repo_id, BUILDING)

    def _already_there(self) -> set[str]:
        with suppress(HfHubHTTPError):  # 404: no building/ yet
            entries = self.api.list_repo_tree(self.repo_id, path_in_repo=BUILDING, repo_type=self.repo_type)
            return {Path(entry.path).name for entry in entries}
        return set()

    def stop(self) -> None:
        """End after the round under way, if any (the final push sends the rest)."""
        self.stopping.set()
        self.join()


@contextmanager
def uploads_while_building(
    folder: Path, repo_id: str, repo_type: str, private: bool, interval: float = UPLOAD_EVERY
) -> Iterator[BuildingUploader | None]:
    """A ``BuildingUploader`` running for the block (None, and a warning, without a token: the build goes on)."""
    if get_token() is None:
        log.warning("no Hugging Face token: finished shards are not uploaded while the build runs")
        yield None
        return
    uploader = BuildingUploader(folder, repo_id, repo_type, private, interval)
    uploader.start()
    try:
        yield uploader
    finally:
        uploader.stop()
