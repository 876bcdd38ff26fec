"""The prompt lock (``prompts.lock.yaml``): a file of the output, published beside the dataset, that keeps what
prompt expansion wrote (``builders.expansion``). It is read where the output lives, the store's copy for an output in
object storage (a process's local copy starts without the export's files), by this one function."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builders.store.remote_dir import RemoteDir, is_remote, read_or_refuse

PROMPT_LOCK = "prompts.lock.yaml"


@dataclass(frozen=True)
class PromptLock:
    """The lock of one output: the output (a path or URL, for messages) and the lock's text (None: there is none)."""

    output: str
    text: str | None

    @property
    def where(self) -> str:
        return f"{self.output}/{PROMPT_LOCK}"


def read_prompt_lock(output: str | Path | RemoteDir) -> PromptLock:
    """The prompt lock of the output at ``output`` (a local directory, a store URL or an opened store), read
    without claiming the output: the dry run and the model check read it before the build."""
    if isinstance(output, RemoteDir) or is_remote(output):
        remote = output if isinstance(output, RemoteDir) else RemoteDir(str(output))
        return PromptLock(remote.url, read_or_refuse(remote, lambda: remote.read_text(PROMPT_LOCK)))
    path = Path(output) / PROMPT_LOCK
    return PromptLock(str(path.parent), path.read_text(encoding="utf-8") if path.is_file() else None)
