"""Pushing a folder to the Hugging Face Hub, the same way for a dataset and a classifier.

Everything goes through huggingface_hub's own API (``create_repo``, ``upload_folder``, ``upload_file``) and its own
token resolution (``HF_TOKEN``, ``hf auth login``). The token is never written or logged by us, and every message
that may quote a server's reply goes through ``scrub``. A failed push raises ``PushError``; both command lines
turn it into one message and exit code ``PUSH_FAILED`` (3), and nothing local has changed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from huggingface_hub import HfApi, get_token
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
