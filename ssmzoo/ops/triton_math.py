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
