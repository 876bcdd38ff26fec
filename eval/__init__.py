"""Scoring of generated (or any) image-classification datasets: CLIP zero-shot and ResNet50 ImageNet top-5,
quality filters on the scores, the dataset summary, and ``python -m eval`` for standalone scoring."""
