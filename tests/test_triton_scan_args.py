"""The Triton scans' public entry points (and the group scans' references) check their arguments as
the dispatcher does.

A wrong shape, a non-floating-point dtype, a tensor on another device, a non-tensor or an ``out`` of
the wrong shape is a ValueError / TypeError naming the entry point and the argument, raised before
any launch (so these run in-process, interpreter or not: the checks come before the device check).
Correct calls on small odd shapes still match the float64 references, under the Triton interpreter
(``TRITON_INTERPRET=1``, CPU tensors) in a subprocess, as tests/test_triton_scan.py runs its kernels.
"""

from __future__ import annotations

import json
import sys
from typing import Callable

import pytest
import torch

from interpreter import checked, run_interpreted

pytest.importorskip("triton")


def scan_args(gen: torch.Generator, b: int = 2, d: int = 5, L: int = 13, N: int = 3) -> dict:
    """The plain scan's arguments (float32, CPU), with every optional term."""
    r = lambda *shape, scale=1.0: torch.randn(*shape, generator=gen) * scale  # noqa: E731
    return dict(u=r(b, d, L), delta=r(b, d, L, scale=0.5), A=-torch.exp(r(d, N, scale=0.5)), B=r(b, N, L),
                C=r(b, N, L), D=r(d), z=r(b, d, L), delta_bias=r(d, scale=0.1))


def bimamba_args(gen: torch.Generator, b: int = 2, d: int = 5, L: int = 13, N: int = 3) -> dict:
    f, bw = scan_args(gen, b, d, L, N), scan_args(gen, b, d, L, N)
    args = dict(f)
    args.update({k + "_b": bw[k] for k in ("u", "delta", "A", "B", "C", "D", "delta_bias")})
    return args


def group_args(gen: torch.Generator, b: int = 2, d: int = 3, H: int = 5, W: int = 3, N: int = 1) -> dict:
    r = lambda *shape, scale=1.0: torch.randn(*shape, generator=gen) * scale  # noqa: E731
    return dict(u=r(b, 4, d, H, W), delta=r(b, 4, d, H, W, scale=0.5), A=-torch.exp(r(4, d, N, scale=0.5)),
                B=r(b, 4, N, H, W), C=r(b, 4, N, H, W), D=r(4, d), delta_bias=r(4, d, scale=0.1))


def norm_gate_args(gen: torch.Generator, b: int = 2, d: int = 5, H: int = 3, W: int = 5) -> dict:
    args = group_args(gen, b, d, H, W)
    args.update(delta_softplus=True, norm_weight=1.0 + 0.2 * torch.randn(4, d, generator=gen),
                norm_bias=0.2 * torch.randn(4, d, generator=gen), eps=1e-5,
                z=torch.randn(b, 4, d, H, W, generator=gen))
    return args


def _entry_points() -> dict[str, tuple[Callable, Callable[[torch.Generator], dict]]]:
    from ssmzoo.ops import triton_bimamba as tb
    from ssmzoo.ops import triton_lookback as tlb
    from ssmzoo.ops import triton_plane as tpl
    from ssmzoo.ops import triton_scan as ts
    from ssmzoo.ops import triton_seq as tsq
    from ssmzoo.ops import triton_strips as tst

    return {
        "selective_scan_triton": (ts.selective_scan_triton, scan_args),
        "bimamba_scan_triton": (ts.bimamba_scan_triton, bimamba_args),
        "bimamba_scan_seq_triton": (tb.bimamba_scan_seq_triton, bimamba_args),
        "bimamba_scan_split_triton": (tb.bimamba_scan_split_triton, bimamba_args),
        "group_scan_4dir_triton": (ts.group_scan_4dir_triton, group_args),
        "group_scan_4dir_norm_gate_triton": (ts.group_scan_4dir_norm_gate_triton, norm_gate_args),
        "group_scan_4dir_lookback_triton": (tlb.group_scan_4dir_lookback_triton, group_args),
        "group_scan_4dir_plane_triton": (tpl.group_scan_4dir_plane_triton, group_args),
        "group_scan_4dir_seq_triton": (tsq.group_scan_4dir_seq_triton, group_args),
        "group_scan_4dir_strips_triton": (tst.group_scan_4dir_strips_triton, group_args),
        "group_scan_4dir_ref": (ts.group_scan_4dir_ref, group_args),
        "group_scan_4dir_norm_gate_ref": (ts.group_scan_4dir_norm_gate_ref, norm_gate_args),
    }


SEQ_ENTRIES = ["selective_scan_triton", "bimamba_scan_triton", "bimamba_scan_seq_triton", "bimamba_scan_split_triton"]
BIMAMBA_ENTRIES = SEQ_ENTRIES[1:]
# the kernels behind group_scan_4dir_triton, each public too (d_state 1)
GROUP_KERNEL_ENTRIES = ["group_scan_4dir_lookback_triton", "group_scan_4dir_plane_triton",
                        "group_scan_4dir_seq_triton", "group_scan_4dir_strips_triton"]
GROUP_TRITON_ENTRIES = ["group_scan_4dir_triton", "group_scan_4dir_norm_gate_triton"] + GROUP_KERNEL_ENTRIES
GROUP_REF_ENTRIES = ["group_scan_4dir_ref", "group_scan_4dir_norm_gate_ref"]  # (no out, any device)
GROUP_ENTRIES = GROUP_TRITON_ENTRIES + GROUP_REF_ENTRIES
NORM_GATE_ENTRIES = ["group_scan_4dir_norm_gate_triton", "group_scan_4dir_norm_gate_ref"]
TRITON_ENTRIES = SEQ_ENTRIES + GROUP_TRITON_ENTRIES
ALL_ENTRIES = SEQ_ENTRIES + GROUP_ENTRIES


def _call(entry: str, change: dict) -> None:
    fn, make = _entry_points()[entry]
    args = make(torch.Generator().manual_seed(0))
    args.update(change)
    fn(**args)


def _replace(entry: str, arg: str, how: Callable[[torch.Tensor], object]) -> dict:
    args = _entry_points()[entry][1](torch.Generator().manual_seed(1))
    return {arg: how(args.get(arg))}


# (entry points, argument, replacement, exception, message after "<entry>: ")
SHAPE_CASES = [
    (SEQ_ENTRIES, "u", lambda t: t[0], ValueError, r"u has shape \(5, 13\); expected 3 dimensions"),
    (SEQ_ENTRIES, "delta", lambda t: t[..., :-1], ValueError, r"delta has shape \(2, 5, 12\); expected u's shape"),
    (SEQ_ENTRIES, "A", lambda t: t[:-1], ValueError, r"A has shape \(4, 3\); expected \(5, N\)"),
    (SEQ_ENTRIES, "B", lambda t: t[..., :-1], ValueError, r"B has shape \(2, 3, 12\); expected \(2, 3, 13\)"),
    (SEQ_ENTRIES, "C", lambda t: t[:, :2], ValueError, r"C has shape \(2, 2, 13\); expected \(2, 3, 13\)"),
    (SEQ_ENTRIES, "D", lambda t: t[:, None], ValueError, r"D has shape \(5, 1\); expected \(5,\) = \(dim,\)"),
    (SEQ_ENTRIES, "z", lambda t: t[:1], ValueError, r"z has shape \(1, 5, 13\); expected u's shape"),
    (SEQ_ENTRIES, "delta_bias", lambda t: t[:4], ValueError, r"delta_bias has shape \(4,\); expected \(5,\)"),
    (SEQ_ENTRIES, "out", lambda t: torch.empty(2, 5, 12), ValueError,
     r"out has shape \(2, 5, 12\); expected u's shape \(2, 5, 13\)"),
    (BIMAMBA_ENTRIES, "u_b", lambda t: t[..., :-1], ValueError, r"u_b has shape \(2, 5, 12\)"),
    (BIMAMBA_ENTRIES, "delta_b", lambda t: t[:, :-1], ValueError,
     r"delta_b has shape \(2, 4, 13\); expected u_b's shape"),
    (BIMAMBA_ENTRIES, "A_b", lambda t: torch.cat([t, t], 1), ValueError,
     r"(B_b has shape \(2, 3, 13\); expected \(2, 6, 13\)|A_b has shape \(5, 6\))"),
    (BIMAMBA_ENTRIES, "C_b", lambda t: t[..., 1:], ValueError, r"C_b has shape \(2, 3, 12\)"),
    (BIMAMBA_ENTRIES, "D_b", lambda t: None, ValueError, r"give D / delta_bias for both directions"),
    (BIMAMBA_ENTRIES, "delta_bias_b", lambda t: t[None], ValueError, r"delta_bias_b has shape \(1, 5\)"),
    (GROUP_ENTRIES, "u", lambda t: t[:, :3], ValueError, r"u has shape \(2, 3, \d, \d, \d\); expected \(batch, 4, d"),
    (GROUP_ENTRIES, "delta", lambda t: t.transpose(-1, -2), ValueError, r"delta has shape .*; expected u's shape"),
    (GROUP_ENTRIES, "A", lambda t: t.reshape(-1, t.shape[-1]), ValueError,
     r"A has shape \(\d+, 1\); expected \(4, \d, N\)"),
    (GROUP_ENTRIES, "B", lambda t: t[..., :-1, :], ValueError, r"B has shape .*; expected \(2, 4, 1, \d, \d\)"),
    (GROUP_ENTRIES, "C", lambda t: torch.cat([t, t], 2), ValueError, r"C has shape \(2, 4, 2, \d, \d\)"),
    (GROUP_ENTRIES, "D", lambda t: t.flatten(), ValueError, r"D has shape \(\d+,\); expected \(4, \d\) = \(4, d\)"),
    (GROUP_ENTRIES, "delta_bias", lambda t: t[:, :-1], ValueError, r"delta_bias has shape \(4, \d\); expected"),
    (GROUP_TRITON_ENTRIES, "out", lambda t: torch.empty(2, 4, 1, 1, 1), ValueError,
     r"out has shape \(2, 4, 1, 1, 1\)"),
    (NORM_GATE_ENTRIES, "z", lambda t: t[..., :-1], ValueError, r"z has shape .*; expected u's"),
    (NORM_GATE_ENTRIES, "norm_bias", lambda t: t[:2], ValueError, r"norm_bias has shape \(2, 5\); expected \(4, 5\)"),
    (NORM_GATE_ENTRIES, "out_proj", lambda t: torch.zeros(4, 5, 4), ValueError,
     r"out_proj has shape \(4, 5, 4\); expected \(4, 5, 5\) = \(4, d, d\)"),
]
TYPE_CASES = [
    (ALL_ENTRIES, "u", lambda t: t.to(torch.int64), TypeError, r"u has dtype torch.int64; expected a floating-point"),
    (ALL_ENTRIES, "B", lambda t: t.numpy(), TypeError, r"B must be a torch.Tensor, got ndarray"),
    (ALL_ENTRIES, "D", lambda t: 1.0, TypeError, r"D must be a torch.Tensor, got float"),
    (ALL_ENTRIES, "A", lambda t: t.to(torch.complex64), TypeError, r"A has dtype torch.complex64"),
    (BIMAMBA_ENTRIES, "C_b", lambda t: t > 0, TypeError, r"C_b has dtype torch.bool"),
    (NORM_GATE_ENTRIES, "norm_weight", lambda t: t.half().to(torch.int32), TypeError,
     r"norm_weight has dtype torch.int32"),
]
# CPU is the only real device here: a meta tensor stands for "another device"
DEVICE_CASES = [
    (ALL_ENTRIES, "C", lambda t: t.to("meta"), ValueError, r"C is on meta; expected u's device cpu"),
    (ALL_ENTRIES, "delta_bias", lambda t: t.to("meta"), ValueError, r"delta_bias is on meta; expected u's device"),
    (TRITON_ENTRIES, "out", lambda t: torch.empty(0, device="meta"), ValueError, r"out is on meta; expected"),
    (BIMAMBA_ENTRIES, "u_b", lambda t: t.to("meta"), ValueError, r"u_b is on meta; expected u's device cpu"),
    (BIMAMBA_ENTRIES, "A_b", lambda t: t.to("meta"), ValueError, r"A_b is on meta; expected u_b's device cpu"),
    (SEQ_ENTRIES, "z", lambda t: t.to("meta"), ValueError, r"z is on meta"),
    (NORM_GATE_ENTRIES, "z", lambda t: t.to("meta"), ValueError, r"z is on meta; expected"),
]


def _d_state_2(entry: str) -> dict:
    args = _entry_points()[entry][1](torch.Generator().manual_seed(1))
    return dict(A=torch.cat([args["A"]] * 2, 2), B=torch.cat([args["B"]] * 2, 2), C=torch.cat([args["C"]] * 2, 2))


def _norm_gate(entry: str, **change) -> dict:
    """The lane-per-channel and look-back kernels' norm-gate epilogue: ``norm_gate`` (norm_weight,
    norm_bias, eps, z) with ``change`` applied."""
    args = norm_gate_args(torch.Generator().manual_seed(1), d=3, H=5, W=3)
    parts = dict(norm_weight=args["norm_weight"], norm_bias=args["norm_bias"], eps=args["eps"], z=args["z"])
    parts.update(change)
    return dict(norm_gate=tuple(parts.values()))


KERNEL_NAMES = {"group_scan_4dir_lookback_triton": "look-back kernel", "group_scan_4dir_plane_triton": "plane kernel",
                "group_scan_4dir_seq_triton": "lane-per-channel scan", "group_scan_4dir_strips_triton": "strip kernel"}
# (entry points, change to the arguments, exception, message after "<entry>: ")
CALL_CASES = [
    (GROUP_KERNEL_ENTRIES, _d_state_2, ValueError,
     "A has shape \\(4, 3, 2\\); the {kernel} takes d_state 1: \\(4, d, 1\\)"),
    (["group_scan_4dir_lookback_triton", "group_scan_4dir_seq_triton"],
     lambda entry: _norm_gate(entry, z=torch.zeros(2, 4, 3, 5, 2)), ValueError,
     r"z has shape \(2, 4, 3, 5, 2\); expected u's shape \(2, 4, 3, 5, 3\)"),
    (["group_scan_4dir_lookback_triton", "group_scan_4dir_seq_triton"],
     lambda entry: _norm_gate(entry, norm_weight=torch.ones(4, 3, dtype=torch.int64)), TypeError,
     r"norm_weight has dtype torch.int64"),
    (["group_scan_4dir_lookback_triton", "group_scan_4dir_seq_triton"],
     lambda entry: dict(norm_gate=(torch.ones(4, 3), torch.zeros(4, 3))), TypeError,
     r"norm_gate must be \(norm_weight, norm_bias, eps, z\), got tuple of 2"),
    (NORM_GATE_ENTRIES, lambda entry: dict(delta=None, B=None, C=None, x_proj=torch.zeros(4, 5, 5)), ValueError,
     r"x_proj has shape \(4, 5, 5\); expected \(4, 7, 5\) = \(4, d \+ 2, d\)"),
    (["group_scan_4dir_lookback_triton"], lambda entry: dict(_norm_gate(entry), x_proj=torch.zeros(4, 5, 3)),
     ValueError, r"pass either delta, B and C or x_proj"),
    (["group_scan_4dir_lookback_triton"], lambda entry: dict(delta=None, B=None, C=None, x_proj=torch.zeros(4, 5, 3)),
     ValueError, r"x_proj / out_proj in the scan need the norm-gate epilogue: pass norm_gate"),
    (["group_scan_4dir_lookback_triton"], lambda entry: dict(_norm_gate(entry), delta=None), TypeError,
     r"delta must be a torch.Tensor, got NoneType"),  # (no x_proj to compute it from)
]


def _cases(table: list) -> list:
    return [pytest.param(entry, arg, how, exc, message, id=f"{entry}-{arg}-{i}")
            for i, (entries, arg, how, exc, message) in enumerate(table) for entry in entries]


@pytest.mark.parametrize("entry,arg,how,exc,message", _cases(SHAPE_CASES + TYPE_CASES + DEVICE_CASES))
def test_a_bad_argument_is_an_error_naming_the_entry_point_and_the_argument(entry, arg, how, exc, message):
    change = {"out": how(None)} if arg == "out" else _replace(entry, arg, how)
    with pytest.raises(exc, match=f"^{entry}: {message}"):
        _call(entry, change)


@pytest.mark.parametrize("entry,change,exc,message", [
    pytest.param(entry, change, exc, message, id=f"{entry}-{i}")
    for i, (entries, change, exc, message) in enumerate(CALL_CASES) for entry in entries])
def test_a_bad_call_is_an_error_naming_the_entry_point(entry, change, exc, message):
    message = message.format(kernel=KERNEL_NAMES.get(entry, ""))
    with pytest.raises(exc, match=f"^{entry}: {message}"):
        _call(entry, change(entry))


@pytest.mark.parametrize("entry", TRITON_ENTRIES)
def test_cpu_tensors_without_the_interpreter_are_refused_after_the_checks(entry, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        _call(entry, {})


def test_the_dispatcher_runs_the_unchecked_kernel_after_its_own_checks():
    """``selective_scan`` checks once (``check_scan_args``) and runs ``_selective_scan_triton``, which
    does not check again: per call the checks cost a few microseconds of host time."""
    import importlib

    from ssmzoo.ops import triton_scan as ts

    dispatch = importlib.import_module("ssmzoo.ops.selective_scan")
    assert dispatch._BACKENDS["triton"] is ts._selective_scan_triton
    assert "check_scan_args" not in ts._selective_scan_triton.__code__.co_names
    assert "check_scan_args" in ts.selective_scan_triton.__code__.co_names


def test_the_group_dispatchers_run_the_unchecked_kernels_after_their_own_checks():
    """``group_scan_4dir_triton`` and ``group_scan_4dir_norm_gate_triton`` (the models' scans) check
    once and run the ``_group_scan_4dir_*_triton`` kernels, which do not check again; the public
    ``group_scan_4dir_*_triton`` kernels check."""
    from ssmzoo.ops import triton_lookback as tlb
    from ssmzoo.ops import triton_plane as tpl
    from ssmzoo.ops import triton_scan as ts
    from ssmzoo.ops import triton_seq as tsq
    from ssmzoo.ops import triton_strips as tst

    checks = {"check_group_scan_args", "_check_group_kernel_args", "_check_norm_gate_args", "_check_out"}
    calls = {"group_scan_4dir_triton": ("lookback", "plane", "seq", "strips"),
             "group_scan_4dir_norm_gate_triton": ("lookback", "seq")}
    for dispatcher, kinds in calls.items():
        names = set(getattr(ts, dispatcher).__code__.co_names)
        for kind in kinds:
            assert f"_group_scan_4dir_{kind}_triton" in names and f"group_scan_4dir_{kind}_triton" not in names
    for module, kind in ((tlb, "lookback"), (tpl, "plane"), (tsq, "seq"), (tst, "strips")):
        assert not checks & set(getattr(module, f"_group_scan_4dir_{kind}_triton").__code__.co_names), kind
        assert "_check_group_kernel_args" in getattr(module, f"group_scan_4dir_{kind}_triton").__code__.co_names


# ---------------------------------------------------------------------------------------------
# Correct calls on small odd shapes, under the interpreter
# ---------------------------------------------------------------------------------------------

def _rel(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref.double()).norm() / ref.double().norm()).item()


def _f64(args: dict) -> dict:
    return {k: v.double() if torch.is_tensor(v) else v for k, v in args.items()}


def _check_correct_calls(seed: int) -> dict:
    """Relative error of each entry point against its float64 reference (outputs pre-filled with NaN)."""
    from ssmzoo.ops import selective_scan_ref
    from ssmzoo.ops import triton_bimamba as tb
    from ssmzoo.ops import triton_lookback as tlb
    from ssmzoo.ops import triton_plane as tpl
    from ssmzoo.ops import triton_scan as ts
    from ssmzoo.ops import triton_seq as tsq
    from ssmzoo.ops import triton_strips as tst

    gen = torch.Generator().manual_seed(seed)
    errors = {}
    x = scan_args(gen, b=2, d=5, L=13, N=3)
    ref = selective_scan_ref(**_f64(x), delta_softplus=True)
    for name, fn in (("selective_scan_triton", ts.selective_scan_triton),
                     ("_selective_scan_triton", ts._selective_scan_triton)):
        out = torch.full_like(x["u"], float("nan"))
        y = fn(**x, delta_softplus=True, out=out, config=dict(BL=16, BD=4))
        errors[name] = _rel(y, ref) if y is out else float("inf")
    grouped = dict(x, B=torch.randn(2, 1, 3, 13, generator=gen), C=torch.randn(2, 1, 3, 13, generator=gen))
    errors["selective_scan_triton_grouped_bc"] = _rel(ts.selective_scan_triton(**grouped),
                                                      selective_scan_ref(**_f64(grouped)))
    bim = bimamba_args(gen, b=1, d=3, L=11, N=3)
    bim.pop("z")
    ref = ts.bimamba_scan_ref(**_f64(bim), delta_softplus=True)
    errors["bimamba_scan_triton"] = _rel(ts.bimamba_scan_triton(**bim, delta_softplus=True,
                                                                config=dict(BL=16, BD=4)), ref)
    errors["bimamba_scan_seq_triton"] = _rel(tb.bimamba_scan_seq_triton(**bim, delta_softplus=True), ref)
    errors["bimamba_scan_split_triton"] = _rel(tb.bimamba_scan_split_triton(**bim, delta_softplus=True,
                                                                            config=dict(SEG=4)), ref)
    g = group_args(gen, b=1, d=3, H=5, W=3)
    ref = ts.group_scan_4dir_ref(**_f64(g), delta_softplus=True)
    errors["group_scan_4dir_triton"] = _rel(ts.group_scan_4dir_triton(**g, delta_softplus=True), ref)
    for name, fn in (("group_scan_4dir_lookback_triton", tlb.group_scan_4dir_lookback_triton),
                     ("group_scan_4dir_plane_triton", tpl.group_scan_4dir_plane_triton),
                     ("group_scan_4dir_seq_triton", tsq.group_scan_4dir_seq_triton),
                     ("group_scan_4dir_strips_triton", tst.group_scan_4dir_strips_triton)):
        out = torch.full_like(g["u"], float("nan"))
        y = fn(**g, delta_softplus=True, out=out)
        errors[name] = _rel(y, ref) if y is out else float("inf")
    gn = norm_gate_args(gen, b=1, d=3, H=5, W=3)
    ref = ts.group_scan_4dir_norm_gate_ref(**_f64(gn))
    gate = tuple(gn.pop(k) for k in ("norm_weight", "norm_bias", "eps", "z"))
    for name, fn in (("group_scan_4dir_lookback_triton_norm_gate", tlb.group_scan_4dir_lookback_triton),
                     ("group_scan_4dir_seq_triton_norm_gate", tsq.group_scan_4dir_seq_triton)):
        errors[name] = _rel(fn(**gn, norm_gate=gate), ref)
    ng = norm_gate_args(gen, b=1, d=5, H=3, W=5)
    errors["group_scan_4dir_norm_gate_triton"] = _rel(ts.group_scan_4dir_norm_gate_triton(**ng),
                                                      ts.group_scan_4dir_norm_gate_ref(**_f64(ng)))
    return errors


def test_correct_calls_on_small_odd_shapes_still_match_the_references():
    errors = run_interpreted(__file__, "--interpret")
    assert "error" not in errors, errors.get("error")
    assert set(errors) == {"selective_scan_triton", "_selective_scan_triton", "selective_scan_triton_grouped_bc",
                           "bimamba_scan_triton", "bimamba_scan_seq_triton", "bimamba_scan_split_triton",
                           "group_scan_4dir_triton", "group_scan_4dir_norm_gate_triton",
                           "group_scan_4dir_lookback_triton", "group_scan_4dir_plane_triton",
                           "group_scan_4dir_seq_triton", "group_scan_4dir_strips_triton",
                           "group_scan_4dir_lookback_triton_norm_gate", "group_scan_4dir_seq_triton_norm_gate"}, errors
    assert max(errors.values()) < 1e-5, errors


if __name__ == "__main__" and sys.argv[1:2] == ["--interpret"]:
    # Runs in the subprocess started by the test above (TRITON_INTERPRET=1 already set).
    print(json.dumps(checked(_check_correct_calls, int(sys.argv[2]))))
