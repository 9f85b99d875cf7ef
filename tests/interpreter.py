"""Runs a test module's cases under Triton's interpreter in a subprocess.

``TRITON_INTERPRET=1`` must be set before Triton is imported, so kernel tests that must run on every
machine (CI has no GPU) re-run their own file as a script with the variable set, on CPU tensors,
and read back one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_interpreted(script: str | Path, mode: str) -> Any:
    """``python script mode SEED`` with the interpreter on; the JSON of its last stdout line.

    SEED is fresh for every run, so each CI run draws new random inputs."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    seed = torch.randint(0, 2**31 - 1, ()).item()
    proc = subprocess.run([sys.executable, str(script), mode, str(seed)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode:
        pytest.fail(f"interpreter run ({mode}, seed {seed}) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def checked(check: Callable[..., dict], *args: Any) -> dict:
    """The subprocess side of one check: ``check(*args)``, or its exception as {"error": "Type: message"}
    for the test that reads it to fail with."""
    try:
        return check(*args)
    except Exception as exc:  # reported by the test
        return dict(error=f"{type(exc).__name__}: {exc}")


def run_cases(run_case: Callable[[dict, str, int], dict], cases: list[dict], base_seed: int) -> str:
    """The subprocess side: every case on CPU tensors, an exception reported per case, one JSON line."""
    return json.dumps([checked(run_case, case, "cpu", base_seed + i) for i, case in enumerate(cases)])


def random_map(gen: torch.Generator, b: int, C: int, H: int, W: int, layout: str) -> torch.Tensor:
    """A float32 (b, C, H, W) map in one of the memory layouts the kernel tests cover: "cl"
    channels-last, "cf" contiguous, "sliced" channels 1..C of a wider channels-last tensor (no
    vector alignment)."""
    if layout == "cl":
        return torch.randn(b, H, W, C, generator=gen).permute(0, 3, 1, 2)
    if layout == "cf":
        return torch.randn(b, C, H, W, generator=gen)
    return torch.randn(b, H, W, 2 * C + 1, generator=gen).permute(0, 3, 1, 2)[:, 1:C + 1]
