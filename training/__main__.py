"""``python -m training``: parse the options, run, turn known failures into one clear line and an exit code."""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from training.config import TrainingError, parse_config
from training.hub import PushError


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "filelock", "urllib3", "PIL", "fsspec", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        from training.train import run

        run(parse_config(argv))
    except (TrainingError, ValidationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except PushError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
