"""``python -m benchmarks.gpu``, the one command for every GPU figure, works before any GPU runs it: its --smoke run
on the smallest setting writes the JSON the real run will write, and appends its section to a RESULTS file."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.gpu import main

RUN_FIELDS = {
    "name": str,
    "family": str,
    "steps": int,
    "batch_size": int,
    "dtype": str,
    "compile": bool,
    "images_per_s": float,
    "bare_images_per_s": float,
    "build_over_bare_time": float,
    "floor_fraction": float,
    "tflops_per_image": float,
    "load_seconds": float,
}


def test_smoke_run_writes_the_json_and_appends_to_results(tmp_path: Path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nearlier figures\n", encoding="utf-8")
    output = tmp_path / "gpu.json"
    argv = ["--smoke", "--only", "sd15", "--batch-size", "1", "--output", str(output), "--results", str(results)]

    assert main(argv) == 0

    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["smoke"] is True and report["device"]["type"] == "cpu" and report["device"]["peak_tflops"] > 0
    [run] = report["runs"]
    for key, kind in RUN_FIELDS.items():
        assert isinstance(run[key], kind), key
    assert (run["name"], run["family"], run["batch_size"], run["compile"]) == ("sd15", "stable-diffusion", 1, False)
    assert run["images_per_s"] > 0 and run["bare_images_per_s"] > 0
    assert run["peak_memory_bytes"] is None and run["compile_seconds"] is None  # no CUDA memory, no compile here
    text = results.read_text(encoding="utf-8")
    assert text.startswith("# Results\n\nearlier figures\n")  # appended, nothing lost
    assert f"## GPU benchmark, {report['date']}, {report['device']['name']}" in text
    assert "| sd15 | 1 | 2 | 32 | float32 | False |" in text


def test_without_cuda_the_real_run_refuses_with_exit_2(tmp_path: Path, capsys):
    if torch.cuda.is_available():
        return  # the real run is the point there
    assert main(["--output", str(tmp_path / "gpu.json"), "--no-results"]) == 2
    assert "--smoke" in capsys.readouterr().err
    assert not (tmp_path / "gpu.json").exists()


def test_a_step_that_fails_is_reported_and_the_run_goes_on(tmp_path: Path):
    """One failing step (here: a pipeline that does not exist) must not cost the other steps' figures."""
    from benchmarks.gpu import STEPS
    from benchmarks.gpu_run import run_step
    from synthcore.launch import start_state

    report = {"runs": [], "skipped": []}
    broken = replace(STEPS[1], tiny="no-such-pipeline")  # sdxl-turbo-1step, not SD: its tiny pipeline is looked up
    run_step(report, broken, True, start_state(), (tmp_path, 1.0))
    assert report["runs"] == []
    [skipped] = report["skipped"]
    assert skipped["name"] == "sdxl-turbo-1step batch 1/8" and skipped["reason"].startswith("failed: ValueError")
