"""Single-instruction float32 approximations for Triton kernels (NVIDIA's MUFU unit, through inline PTX).

libdevice's log2 and IEEE division cost tens of instructions per element, and Triton's exp2 adds
range fix-ups for subnormal results; in kernels bound by instruction issue (the bidirectional scan's
softplus, the depthwise conv's activations) one MUFU instruction each is the difference. Relative
error ~1e-7 (``ex2``, ``lg2``) and ~1 ulp (``rcp``); subnormal results flush to zero (``.ftz``).
The Triton interpreter has no inline assembly: with ``FAST`` false the plain Triton operation runs.
"""

import triton
import triton.language as tl


@triton.jit
def mufu(x, OP: tl.constexpr, FAST: tl.constexpr):
    """OP(x) for float32 x: OP is "ex2" (2^x), "lg2" (log2 x) or "rcp" (1 / x)."""
    tl.static_assert((OP == "ex2") or (OP == "lg2") or (OP == "rcp"), "mufu: OP must be ex2, lg2 or rcp")
    if FAST:
        r = tl.inline_asm_elementwise(OP + ".approx.ftz.f32 $0, $1;", "=f,f", [x], dtype=tl.float32,
                                      is_pure=True, pack=1)
    elif OP == "ex2":
        r = tl.exp2(x)
    elif OP == "lg2":
        r = tl.log2(x)
    else:
        r = 1.0 / x
    return r


# 2^f on [-0.5, 0.5], degree 5, fitted for relative error (max 8.3e-8 in exact arithmetic, 2.2e-7
# evaluated in float32 by Horner: about MUFU ex2.approx's 2 ulp).
_EXP2_C0 = tl.constexpr(1.0000001192092896)
_EXP2_C1 = tl.constexpr(0.6931469440460205)
_EXP2_C2 = tl.constexpr(0.24022085964679718)
_EXP2_C3 = tl.constexpr(0.0555071197450161)
_EXP2_C4 = tl.constexpr(0.009677068330347538)
_EXP2_C5 = tl.constexpr(0.0013280885759741068)


@triton.jit
def exp2_fma(x):
    """2^x for float32 x <= 0 without the MUFU unit (FMA and integer pipes: ~11 instructions).

    Where a kernel is bound by the MUFU pipe (16 results per clock per SM, an eighth of the FMA
    rate), computing a share of its exponentials this way balances the two pipes. x is clamped at
    -125 (2^-125 ~ 2.4e-38 stands in for anything smaller: the exponent field stays normal); x > 0 is
    not handled (the result's exponent would need a range check)."""
    x = tl.maximum(x, -125.0)
    t = x + 12582912.0  # 1.5 * 2^23: rounds x to the nearest integer j, held in t's low mantissa bits
    f = x - (t - 12582912.0)  # in [-0.5, 0.5]
    p = _EXP2_C5 * f + _EXP2_C4
    p = p * f + _EXP2_C3
    p = p * f + _EXP2_C2
    p = p * f + _EXP2_C1
    p = p * f + _EXP2_C0
    # t's bits are 0x4B400000 + j; shifted left by 23 the constant wraps to 0, leaving j << 23
    scale = t.to(tl.int32, bitcast=True) << 23
    return (p.to(tl.int32, bitcast=True) + scale).to(tl.float32, bitcast=True)


# log1p(t) / t on [0, 1], degree 8, fitted for relative error (3.0e-8 in exact arithmetic, 2.4e-7
# evaluated in float32 by Horner).
_LOG1P_C0 = tl.constexpr(0.9999999403953552)
_LOG1P_C1 = tl.constexpr(-0.4999949336051941)
_LOG1P_C2 = tl.constexpr(0.3331909477710724)
_LOG1P_C3 = tl.constexpr(-0.24842976033687592)
_LOG1P_C4 = tl.constexpr(0.19105982780456543)
_LOG1P_C5 = tl.constexpr(-0.13663195073604584)
_LOG1P_C6 = tl.constexpr(0.07822534441947937)
_LOG1P_C7 = tl.constexpr(-0.029504867270588875)
_LOG1P_C8 = tl.constexpr(0.005232601426541805)


@triton.jit
def softplus_poly(x):
    """log(1 + e^x) for float32 x, as max(x, 0) + log1p(t) with t = e^-|x| in (0, 1] and log1p(t) a
    polynomial: one exponential, ~12 FMA-pipe instructions, no branch. ``tl.log(1 + tl.exp(x))``
    compiles to libdevice's logf (~30 instructions with a branch for special values) and loses the
    small values where 1 + e^x rounds e^x away (x = -10: ~1e-3 relative). This adds ~2.5e-7 relative
    (Horner's rounding) to the exponential's own error, which both forms share: up to ~|x| 2^-23
    (2^x of the rounded product -|x| log2 e). t is ``tl.exp2`` of that product, which compiles to the
    bare MUFU ex2 (sm_90), where ``tl.exp`` adds three range fix-up instructions per element for
    results below 2^-126 (x < -87, where t now flushes to 0 and softplus(x) < 1.2e-38 to 0): 1-2%
    faster channel-first GroupMamba scans on the H100 (docs/gpu_runs/s30_run2_table.txt)."""
    t = tl.exp2(tl.abs(x) * -1.4426950408889634)
    p = _LOG1P_C8 * t + _LOG1P_C7
    p = p * t + _LOG1P_C6
    p = p * t + _LOG1P_C5
    p = p * t + _LOG1P_C4
    p = p * t + _LOG1P_C3
    p = p * t + _LOG1P_C2
    p = p * t + _LOG1P_C1
    p = p * t + _LOG1P_C0
    return tl.maximum(x, 0.0) + t * p
