"""One log set-up for every command line (build.py, python -m eval, python -m training)."""

from __future__ import annotations

import logging

_CHATTY = ("httpx", "httpcore", "filelock", "urllib3", "PIL", "fsspec", "matplotlib")


def configure_logging() -> None:
    """Time, level, logger and message at INFO; libraries that chat at INFO only say warnings."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
