"""CPU inference linears through oneDNN with a prepacked weight (``ssmzoo.ops.cpu_onednn``).

The fast path must equal ``F.linear`` up to float32 summation order, follow every change of the
weights (its packed copy is cached on the module), and step aside wherever it does not apply:
autograd, autocast, other dtypes and devices.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssmzoo.ops import cpu_onednn
from ssmzoo.ops.cpu_onednn import PackedLinear, conv2d_act

pytestmark = pytest.mark.skipif(not cpu_onednn._AVAILABLE, reason="PyTorch without oneDNN's linear")


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


@pytest.mark.parametrize("shape,out_features,bias", [((1, 3136, 64), 512, True), ((2, 37, 348), 1392, True),
                                                       ((5, 1392), 348, False), ((1, 1, 448), 7, True)])
def test_packed_linear_matches_f_linear(shape, out_features, bias) -> None:
    layer = PackedLinear(shape[-1], out_features, bias=bias).eval()
    x = torch.randn(*shape)
    with torch.inference_mode():
        got = layer(x)
    expected = F.linear(x.double(), layer.weight.double(), None if layer.bias is None else layer.bias.double())
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert rel_err(got, expected) <= 1e-6
    assert "_ssmzoo_packed_weight" in layer.__dict__  # the fast path ran


def test_the_packed_weight_follows_weight_changes() -> None:
    layer = PackedLinear(24, 40).eval()
    x = torch.randn(3, 24)

    def reference() -> torch.Tensor:
        return F.linear(x, layer.weight, layer.bias).detach()

    with torch.no_grad():
        first = layer(x)
        assert rel_err(first, reference()) <= 1e-6
        other = PackedLinear(24, 40)
        layer.load_state_dict(other.state_dict())                # in-place copies
        assert rel_err(layer(x), reference()) <= 1e-6
        layer.weight.mul_(-2.0)                                 # an in-place update
        assert rel_err(layer(x), reference()) <= 1e-6
        layer.weight = torch.nn.Parameter(torch.randn(40, 24))  # a replaced parameter
        assert rel_err(layer(x), reference()) <= 1e-6
    assert not torch.allclose(first, layer(x).detach())


def test_writes_through_data_are_seen_after_invalidate_caches() -> None:
    """``w.data`` has a version counter of its own: writes through it are invisible to the cache key,
    so the packed weight is dropped explicitly (``invalidate_caches`` walks a whole model)."""
    from ssmzoo.ops.cpu_onednn import invalidate_caches

    model = torch.nn.Sequential(PackedLinear(24, 40), torch.nn.ReLU(), PackedLinear(40, 8)).eval()
    x = torch.randn(3, 24)
    with torch.no_grad():
        model(x)
        model[0].weight.data.mul_(-2.0)
        assert invalidate_caches(model) == 2
        expected = F.linear(F.relu(F.linear(x, model[0].weight, model[0].bias)), model[2].weight, model[2].bias)
        assert rel_err(model(x), expected) <= 1e-6


def test_a_model_that_ran_on_cpu_can_be_copied_and_saved() -> None:
    """The packed weight is a cache of an opaque oneDNN tensor: deepcopy and torch.save leave it out."""
    import copy
    import io

    from ssmzoo.models.groupmamba import GroupMamba

    model = GroupMamba(embed_dims=(16, 32, 64, 64), depths=(1, 1, 1, 1), stem_hidden_dim=8,
                       num_classes=5).eval()
    x = torch.randn(1, 3, 64, 48)
    with torch.inference_mode():
        expected = model(x)
    clone = copy.deepcopy(model)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)  # our own in-memory object, not from the network
    with torch.inference_mode():
        assert torch.equal(clone(x), expected) and torch.equal(loaded(x), expected)


def test_the_fast_path_steps_aside_where_it_does_not_apply() -> None:
    layer = PackedLinear(16, 8)
    x = torch.randn(4, 16, requires_grad=True)
    layer(x).sum().backward()                                   # autograd: F.linear, gradients flow
    assert x.grad is not None and layer.weight.grad is not None
    assert "_ssmzoo_packed_weight" not in layer.__dict__
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(4, 16)).dtype == torch.bfloat16  # autocast: F.linear in bfloat16
    double = PackedLinear(16, 8).double()
    with torch.no_grad():
        assert double(torch.randn(4, 16, dtype=torch.float64)).dtype == torch.float64
    assert "_ssmzoo_packed_weight" not in layer.__dict__ and "_ssmzoo_packed_weight" not in double.__dict__


@pytest.mark.parametrize("activation", ["gelu", "silu", "none"])
@pytest.mark.parametrize("channels,height,width", [(64, 13, 9), (24, 1, 7)])
def test_conv2d_act_matches_conv_then_activation(activation, channels, height, width) -> None:
    """GroupMamba's depthwise 3x3 convs on channels-last maps (odd and degenerate sizes) with the
    activation as oneDNN's post-op, against the conv and the activation in float64."""
    x = torch.randn(2, height, width, channels).permute(0, 3, 1, 2)  # channels-last, as the model's maps
    weight = torch.randn(channels, 1, 3, 3).to(memory_format=torch.channels_last)
    bias = torch.randn(channels)
    with torch.inference_mode():
        got = conv2d_act(x, weight, bias, (1, 1), (1, 1), (1, 1), channels, activation)
    ref = F.conv2d(x.double(), weight.double(), bias.double(), padding=1, groups=channels)
    ref = {"gelu": F.gelu, "silu": F.silu, "none": lambda t: t}[activation](ref)
    assert got.shape == ref.shape and got.dtype == torch.float32
    assert rel_err(got, ref) <= 1e-6


def test_conv2d_act_steps_aside_under_autograd_and_checks_its_activation() -> None:
    x = torch.randn(1, 8, 5, 5, requires_grad=True)
    weight = torch.randn(8, 1, 3, 3)
    y = conv2d_act(x, weight, None, (1, 1), (1, 1), (1, 1), 8, "gelu")
    y.sum().backward()
    assert x.grad is not None
    assert rel_err(y.detach(), F.gelu(F.conv2d(x.detach(), weight, padding=1, groups=8))) <= 1e-6
    with pytest.raises(ValueError, match="activation"):
        conv2d_act(x.detach(), weight, None, (1, 1), (1, 1), (1, 1), 8, "relu6")

