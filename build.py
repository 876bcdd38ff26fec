"""Build a synthetic image-classification dataset from a recipe.

python build.py recipes/smoke.yaml                  # one process
accelerate launch build.py recipes/fox_dog.yaml     # every GPU accelerate gives it
"""

import sys

from builders.cli import main

if __name__ == "__main__":
    sys.exit(main())
