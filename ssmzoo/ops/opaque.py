"""Calling ssmzoo's custom operators: one opaque node under torch.compile, a plain call in eager mode.

The Triton launches are registered as ``torch.library.custom_op`` operators so that torch.compile
keeps each as one node (it neither traces the launch code nor copies the inputs). In eager mode the
same registration costs host time on every call: the operator's Python dispatch (autograd and device
redispatch, Dynamo's ``disable`` wrapper around the implementation). GroupMamba-T makes 63 such calls
per forward, and its eager forward took ~39-43 ms of host time whatever the batch
(docs/gpu_runs/s24_run11.txt), so eager inference was bound by the host. ``call_op`` runs the
operator's function directly where nothing needs the operator: not while compiling, and not where
autograd would record (the operators have no backward; going through them keeps their error).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

# False: always through the registered operators (A/B switch: benchmarks/ab_switches.py AB_EAGER_OPS).
EAGER_DIRECT = True


def _records_autograd(args: tuple, kwargs: dict) -> bool:
    if not torch.is_grad_enabled():
        return False
    return any(isinstance(a, Tensor) and a.requires_grad for a in (*args, *kwargs.values()))


def call_op(op: Any, *args: Any, **kwargs: Any) -> Any:
    """``op(*args, **kwargs)`` for a ``torch.library.custom_op`` operator; in eager mode (not compiling,
    no autograd to record) its Python function is called directly: the same function, the same
    thread-local state (autocast included), without the dispatch."""
    if EAGER_DIRECT and not torch.compiler.is_compiling() and not _records_autograd(args, kwargs):
        # CustomOpDef keeps the function it wraps as _init_fn; anything else (a future torch without it,
        # a stand-in such as a test's mock) is called as it is
        fn = getattr(op, "_init_fn", None)
        if inspect.isfunction(fn):
            return fn(*args, **kwargs)
    return op(*args, **kwargs)
