"""Scoring of generated (or any) image-classification datasets: CLIP zero-shot and ResNet50 ImageNet top-5."""
