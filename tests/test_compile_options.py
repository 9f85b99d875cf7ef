"""``factory.compile_model``: a model's own Inductor settings are in force while its compiled graph
is traced, compiled and called, for the device its parameters are on; models without settings (timm
peers) compile as plain ``torch.compile`` would, and the settings do not leak into them."""

from __future__ import annotations

import pytest
import torch
import torch._inductor.config as inductor_config
from torch import nn

from ssmzoo import factory
from ssmzoo.models import groupmamba as gm


class WithSettings(nn.Linear):
    inductor_options = {"cpu": {"freezing": True, "force_shape_pad": True}, "cuda": {"max_autotune": True}}


@pytest.fixture
def compile_calls(monkeypatch):
    """What compile_model hands to torch.compile; the "compiled" model records the Inductor settings
    in force when it is called (Dynamo reads ``freezing`` then, while tracing)."""
    calls = []

    def fake_compile(model, **kwargs):
        calls.append(kwargs)

        def compiled(x):
            return {"freezing": inductor_config.freezing, "force_shape_pad": inductor_config.force_shape_pad,
                    "max_autotune": inductor_config.max_autotune}
        return compiled
    monkeypatch.setattr(torch, "compile", fake_compile)
    return calls


def test_the_settings_of_the_parameters_device_are_in_force_during_each_call(compile_calls):
    fn = factory.compile_model(WithSettings(4, 4), mode="reduce-overhead", dynamic=False)
    assert compile_calls == [{"mode": "reduce-overhead", "dynamic": False}]
    for _ in range(2):
        assert fn(torch.ones(4)) == {"freezing": True, "force_shape_pad": True, "max_autotune": False}
    # and only during the call
    assert (inductor_config.freezing, inductor_config.force_shape_pad) == (False, False)


def test_models_without_settings_compile_as_torch_compile_would(compile_calls):
    fn = factory.compile_model(nn.Linear(4, 4), mode="reduce-overhead", fullgraph=True)
    assert compile_calls == [{"mode": "reduce-overhead", "fullgraph": True}]
    assert fn(torch.ones(4)) == {"freezing": False, "force_shape_pad": False, "max_autotune": False}


def test_a_device_without_settings_compiles_plainly(compile_calls):
    class CudaOnly(nn.Linear):
        inductor_options = {"cuda": {"freezing": True}}

    fn = factory.compile_model(CudaOnly(4, 4))
    assert fn(torch.ones(4))["freezing"] is False


def test_another_backend_gets_no_inductor_settings(compile_calls):
    fn = factory.compile_model(WithSettings(4, 4), backend="aot_eager")
    assert compile_calls == [{"mode": None, "backend": "aot_eager"}]
    assert fn(torch.ones(4))["freezing"] is False


def test_the_wrapper_still_shows_the_compiled_module():
    model = WithSettings(4, 4)
    fn = factory.compile_model(model)
    assert isinstance(fn, factory.InductorSettings) and fn._orig_mod is model


def test_groupmamba_settings_are_inductor_settings_of_this_torch():
    """A misspelt or retired setting would only fail at the first compiled call, on the GPU."""
    model = gm.GroupMamba(embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1), stem_hidden_dim=8)
    assert model.inductor_options["cuda"]
    for settings in model.inductor_options.values():
        for name, value in settings.items():
            assert type(getattr(inductor_config, name)) is type(value), name
