"""The recipe's upper bounds: a recipe of a few lines must not ask for more than a machine can plan, and each
bound names its key in the message that enforces it (``builders.recipe`` and ``builders.recipe_checks``)."""

MAX_NAME_CHARS = 100  # dataset, class and split names (a dataset name names a directory, a class a row id)
MAX_TEXT_CHARS = 1_000  # one prompt (expanded templates included), negative prompt, label text, template
MAX_DESCRIPTION_CHARS = 10_000
MAX_IMAGE_SIDE = 4096
MAX_STEPS = 1000
MAX_BATCH_SIZE = 1024
MAX_IMAGES_PER_PROMPT = 100_000
MAX_REGENERATIONS = 100
MAX_SHARD_SIZE = 100_000
MAX_SEED = 2**63 - 1
MAX_CLASSES = 100_000
MAX_IMAGES = 1_000_000_000  # per split and class, and in the whole plan (planning is arithmetic; this bounds the rest)
# Template expansion is counted before it happens (the product of its variables' lengths). A recipe that needs
# more prompts than this per class must shrink its variables.
MAX_PROMPTS_PER_CLASS = 100_000
MAX_PROMPTS = 1_000_000  # all classes together
MAX_GUIDANCE_VALUES = 64  # one guidance sweep
# Guidance multiplies the gap between two noise predictions on the GPU: far beyond any useful value (1-20) a large
# one overflows half precision to inf and the images come out black, scored NaN.
MAX_GUIDANCE_SCALE = 100.0
MAX_PARTITION_WEIGHT = 1e6  # one split's weight in prompt_partition (their sum must stay finite)
MAX_UPLOAD_INTERVAL = 86_400.0  # seconds between two uploads during a build
# Real-image guidance (``classes.<name>.reference_images``): a reference set is a few to a few thousand photos; each
# is read whole when the recipe loads, so its file and its decoded size are bounded (a decompression bomb, a PNG of
# a few KB declaring gigapixels, is refused from its header before any pixel is decoded).
MAX_REFERENCES = 10_000  # per class
MAX_REFERENCE_BYTES = 64 * 2**20  # one reference file
MAX_REFERENCE_PIXELS = 64_000_000  # one reference image's width x height (a 64-megapixel photo)
