"""Column names of a dataset in our layout, written once: the builder writes them, scorers, filters, summary,
pictures, cards and the probe read them."""

ID = "id"
IMAGE = "image"
LABEL = "label"
PROMPT = "prompt"
NEGATIVE_PROMPT = "negative_prompt"
SEED = "seed"
GUIDANCE_SCALE = "guidance_scale"
SAFETY_REGENERATIONS = "safety_regenerations"

DROPPED_SUFFIX = "_dropped"  # split of the rows the filters set aside: ``<split>_dropped``
