"""``call_op``: ssmzoo's custom operators are plain calls in eager mode (no dispatcher host time) and
stay one opaque operator node under torch.compile and wherever autograd would record."""

from __future__ import annotations

import torch
from torch import Tensor

from ssmzoo.ops import opaque
from ssmzoo.ops.opaque import call_op


@torch.library.custom_op("ssmzoo_test::scale_add", mutates_args=())
def scale_add(x: Tensor, y: Tensor, alpha: float) -> Tensor:
    # Reached through the dispatcher, the function runs below autograd: a product of a tensor that
    # requires grad then has no grad_fn. Called directly (with grad mode on) it has one.
    probe = torch.ones(1, requires_grad=True) * 2
    scale_add.via_dispatcher = probe.grad_fn is None
    return x * alpha + y


@scale_add.register_fake
def _scale_add_fake(x, y, alpha):
    return torch.empty_like(x)


def test_eager_call_skips_the_dispatcher_and_gives_the_same_result():
    x, y = torch.randn(3, 5), torch.randn(3, 5)
    direct = call_op(scale_add, x, y, 2.5)
    assert scale_add.via_dispatcher is False
    through = scale_add(x, y, 2.5)
    assert scale_add.via_dispatcher is True
    torch.testing.assert_close(direct, through, rtol=0, atol=0)


def test_eager_call_keeps_autocast_state_and_keywords():
    x = torch.randn(2, 2)
    with torch.autocast("cpu", torch.bfloat16):
        out = call_op(scale_add, x, y=x, alpha=1.0)
    torch.testing.assert_close(out, 2 * x)


def test_inputs_that_require_grad_go_through_the_operator():
    x = torch.randn(4, requires_grad=True)
    call_op(scale_add, x, torch.zeros(4), 1.0)
    assert scale_add.via_dispatcher is True
    call_op(scale_add, x.detach(), torch.zeros(4), 1.0)   # nothing to record: the direct call again
    assert scale_add.via_dispatcher is False


def test_anything_but_a_custom_operator_is_called_as_it_is():
    from unittest import mock

    stand_in = mock.MagicMock(return_value=torch.zeros(1))   # (has every attribute, _init_fn included)
    assert torch.equal(call_op(stand_in, torch.ones(1)), torch.zeros(1))
    stand_in.assert_called_once()


def test_switch_off_always_dispatches(monkeypatch):
    monkeypatch.setattr(opaque, "EAGER_DIRECT", False)
    call_op(scale_add, torch.ones(2), torch.ones(2), 1.0)
    assert scale_add.via_dispatcher is True


def test_compiled_graph_keeps_the_operator_as_one_node():
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    fn = torch.compile(lambda a, b: call_op(scale_add, a, b, 3.0) + 1, backend=backend, fullgraph=True)
    x, y = torch.randn(4), torch.randn(4)
    torch.testing.assert_close(fn(x, y), x * 3 + y + 1)
    targets = [node.target for g in graphs for node in g.graph.nodes if node.op == "call_function"]
    assert torch.ops.ssmzoo_test.scale_add.default in targets
