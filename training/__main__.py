"""``python -m training``: parse the options, run, turn known failures into one clear line and an exit code
(2: bad input; 3: the push failed, the local outputs are complete; 4: the backbone's weights are not available,
checked before anything is read or written; 5, 6, 130, 143: ``synthcore.faults``)."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from synthcore.availability import ModelUnavailable, report_unavailable, require_models
from synthcore.faults import report_fault, sigterm_raises
from synthcore.hub import PUSH_FAILED, PushError, scrub
from synthcore.logs import configure_logging
from training.backbone import backbone_needs
from training.config import TrainingError, parse_config
from training.train import run


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    config = None
    try:
        config = parse_config(argv)
        require_models(backbone_needs(config.backbone_weights))
        with sigterm_raises():
            run(config)
    except (TrainingError, ValidationError) as err:
        print(f"error: {scrub(str(err))}", file=sys.stderr)
        return 2
    except ModelUnavailable as err:
        return report_unavailable(err)
    except PushError as err:
        print(f"error: {scrub(str(err))}\nThe trained classifier is in {config.output_dir}.", file=sys.stderr)
        return PUSH_FAILED
    except BaseException as err:  # noqa: BLE001 - the faults every command ends alike; anything else is re-raised
        output_dir = config.output_dir if config else "the output directory"
        if (code := report_fault(err, output_dir, "Nothing in the output directory was replaced.")) is None:
            raise
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
