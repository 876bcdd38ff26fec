"""``evaluate`` modules shipped with the project, loaded by path (offline): ``evaluate.load(CLIP_SCORE)``."""

from pathlib import Path

CLIP_SCORE = str(Path(__file__).parent / "clip_score")
