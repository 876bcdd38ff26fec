"""``python -m training``: parse the options, run, turn known failures into one clear line and an exit code."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from builders.logs import configure_logging
from training.config import TrainingError, parse_config
from training.hub import PushError


def main(argv: list[str] | None = None) -> int:
    configure_logging()
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
