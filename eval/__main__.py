"""``python -m eval DATASET``: score an image-classification dataset (see ``eval.standalone``)."""

import sys

from eval.standalone import main

if __name__ == "__main__":
    sys.exit(main())
