"""``python -m eval DATASET``: score an image-classification dataset (see ``eval.standalone``);
``python -m eval --compare A B ...``: compare datasets of the same classes (see ``eval.compare``)."""

import sys

if __name__ == "__main__":
    if "--compare" in sys.argv[1:]:
        from eval.compare import main
    else:
        from eval.standalone import main
    sys.exit(main())
