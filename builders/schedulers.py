"""Scheduler choice: short names for the diffusers schedulers people use, or any diffusers scheduler class."""

from __future__ import annotations

from typing import Any

# name -> (diffusers class, extra config). The class is swapped in with ``from_config`` of the model's own
# scheduler config, so the noise schedule the model was trained with is kept.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpm++_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
}
SCHEDULER_NAMES = tuple(SCHEDULERS)


def is_known_scheduler(name: str) -> bool:
    if name == "default" or name in SCHEDULERS:
        return True
    import diffusers

    return name.endswith("Scheduler") and hasattr(diffusers, name)


def make_scheduler(name: str, model_scheduler: Any) -> Any:
    """The scheduler a recipe names, configured from the model's own scheduler (``default`` keeps it)."""
    if name == "default":
        return model_scheduler
    import diffusers

    class_name, extra = SCHEDULERS.get(name, (name, {}))
    return getattr(diffusers, class_name).from_config(model_scheduler.config, **extra)
