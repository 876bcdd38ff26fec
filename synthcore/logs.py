"""One log set-up for every command line (build.py, python -m eval, python -m training).

- Log lines go through tqdm (``tqdm.write``, as ``tqdm.contrib.logging.logging_redirect_tqdm`` does, here for the
  whole run): a line logged while a progress bar is drawn is printed above the bar instead of glued to it.
- Libraries print through the same handler, once: huggingface_hub and datasets add a handler of their own and
  also propagate to ours (every warning twice); transformers and diffusers print past it. ``route_library_logs``
  takes their handlers out (call it again after importing one of them).
- Every log line, Python warning and uncaught traceback is scrubbed of the Hub token (``synthcore.hub.scrub``):
  an exception may quote a server's reply that echoes it.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback

from tqdm import tqdm

from synthcore.hub import scrub

_CHATTY = ("httpx", "httpx2", "httpcore", "filelock", "urllib3", "PIL", "fsspec", "matplotlib")
_LIBRARIES = ("huggingface_hub", "datasets", "transformers", "diffusers")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ConsoleHandler(logging.StreamHandler):
    """Writes each record, scrubbed, with ``tqdm.write``: progress bars are cleared, the line printed, the bars
    drawn again below it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(scrub(self.format(record)), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise; it reports its own failures
            self.handleError(record)


def configure_logging() -> None:
    """Time, level, logger and message at INFO on stderr, through progress bars, scrubbed; libraries that chat at
    INFO only say warnings; Python warnings and uncaught exceptions are scrubbed too."""
    root = logging.getLogger()
    _remove_stderr_handlers(root)
    if not any(isinstance(handler, ConsoleHandler) for handler in root.handlers):
        handler = ConsoleHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    route_library_logs()
    sys.excepthook = _scrubbed_excepthook
    threading.excepthook = _scrubbed_thread_excepthook


def route_library_logs() -> None:
    """The imported libraries' loggers print through our handler only (their own stderr handlers removed)."""
    for name in _LIBRARIES:
        if name not in sys.modules:
            continue
        logger = logging.getLogger(name)
        _remove_stderr_handlers(logger)
        logger.propagate = True


def _remove_stderr_handlers(logger: logging.Logger) -> None:
    """Plain stderr handlers (a library's default, an earlier ``basicConfig``); others (files, pytest's) stay."""
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.__stderr__):
            logger.removeHandler(handler)


def _scrubbed_excepthook(kind, value, tb) -> None:
    sys.stderr.write(scrub("".join(traceback.format_exception(kind, value, tb))))


def _scrubbed_thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
    sys.stderr.write(scrub(f"Exception in thread {name}:\n{text}"))
