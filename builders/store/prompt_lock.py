"""The prompt lock (``prompts.lock.yaml``): a file of the output, published beside the dataset, that keeps what
prompt expansion wrote (``builders.expansion``). It is read where the output lives, the store's copy for an output in
object storage (a process's local copy starts without the export's files), by this one function."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builders.store.remote_dir import RemoteDir, is_remote, read_or_refuse
from synthcore.yamlfile import MAX_FILE_BYTES

PROMPT_LOCK = "prompts.lock.yaml"


@dataclass(frozen=True)
class PromptLockFile:
    """The lock of one output: the output (a path or URL, for messages) and the lock's bytes, at most one more than
    a lock may have (None: there is none). ``builders.expansion.read_lock`` reads what they say."""

    output: str
    data: bytes | None

    @property
    def where(self) -> str:
        return f"{self.output}/{PROMPT_LOCK}"


def read_prompt_lock(output: str | Path | RemoteDir) -> PromptLockFile:
    """The prompt lock of the output at ``output`` (a local directory, a store URL or an opened store), read
    without claiming the output: the dry run and the model check read it before the build."""
    if isinstance(output, RemoteDir) or is_remote(output):
        remote = output if isinstance(output, RemoteDir) else RemoteDir(str(output))
        return PromptLockFile(remote.url, read_or_refuse(remote, lambda: remote.read_bytes(PROMPT_LOCK, LIMIT)))
    path = Path(output) / PROMPT_LOCK
    if not path.is_file():
        return PromptLockFile(str(path.parent), None)
    with open(path, "rb") as file:
        return PromptLockFile(str(path.parent), file.read(LIMIT))


LIMIT = MAX_FILE_BYTES + 1  # bytes read of a lock: one more than it may have, so a larger one is refused as such
