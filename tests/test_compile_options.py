"""``factory.compile_model``: a model's own Inductor options reach its compiled graphs, merged over
the options the chosen mode stands for; models without options (timm peers) compile as plain
``torch.compile`` would."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ssmzoo import factory
from ssmzoo.models import groupmamba as gm


class WithOptions(nn.Linear):
    inductor_options = {"cpu": {"force_shape_pad": True}, "cuda": {"freezing": True}}


@pytest.fixture
def compile_calls(monkeypatch):
    """What compile_model hands to torch.compile (the compiled function is not needed here)."""
    calls = []
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: calls.append(kwargs) or model)
    return calls


@pytest.mark.parametrize("mode, mode_options", [
    (None, {}),
    ("default", {}),
    ("reduce-overhead", {"triton.cudagraphs": True}),
    ("max-autotune-no-cudagraphs", {"max_autotune": True, "coordinate_descent_tuning": True}),
])
def test_model_options_are_merged_over_the_mode(compile_calls, mode, mode_options):
    factory.compile_model(WithOptions(4, 4), mode=mode, dynamic=False)
    (kwargs,) = compile_calls
    assert "mode" not in kwargs  # torch.compile takes mode or options, not both
    assert kwargs["options"] == {**mode_options, "force_shape_pad": True}
    assert kwargs["dynamic"] is False


def test_models_without_options_compile_as_torch_compile_would(compile_calls):
    factory.compile_model(nn.Linear(4, 4), mode="reduce-overhead", fullgraph=True)
    assert compile_calls == [{"mode": "reduce-overhead", "fullgraph": True}]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_options_of_the_parameters_device_apply(compile_calls):
    factory.compile_model(WithOptions(4, 4).cuda())
    assert compile_calls == [{"options": {"freezing": True}}]


def test_a_device_without_options_compiles_plainly(compile_calls):
    class CudaOnly(nn.Linear):
        inductor_options = {"cuda": {"freezing": True}}

    factory.compile_model(CudaOnly(4, 4), mode="reduce-overhead")
    assert compile_calls == [{"mode": "reduce-overhead"}]


def test_another_backend_gets_no_inductor_options(compile_calls):
    factory.compile_model(WithOptions(4, 4), backend="aot_eager")
    assert compile_calls == [{"mode": None, "backend": "aot_eager"}]


def test_groupmamba_options_are_inductor_settings_of_this_torch():
    """A misspelt or retired option would only fail at the first compiled call, on the GPU."""
    import torch._inductor.config as inductor_config

    model = gm.GroupMamba(embed_dims=(8, 16, 24, 32), depths=(1, 1, 1, 1), stem_hidden_dim=8)
    assert model.inductor_options["cuda"]
    for device_options in model.inductor_options.values():
        for name, value in device_options.items():
            assert type(getattr(inductor_config, name)) is type(value), name
