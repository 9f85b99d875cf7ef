"""The CPU selective scan computes the float64 recurrence, whatever the shape."""

import pytest
import torch

from ssmzoo.ops import scan_backend, selective_scan, selective_scan_chunked, selective_scan_ref


def random_scan_inputs(batch, dim, length, n_state, groups=None, dtype=torch.float32, seed=None):
    gen = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)
    rand = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    bc_shape = (batch, n_state, length) if groups is None else (batch, groups, n_state, length)
    return dict(
        u=rand(batch, dim, length).to(dtype),
        delta=(rand(batch, dim, length) * 0.5).to(dtype),
        A=-torch.exp(rand(dim, n_state) * 0.5),
        B=rand(*bc_shape).to(dtype),
        C=rand(*bc_shape).to(dtype),
        D=rand(dim),
        z=rand(batch, dim, length).to(dtype),
        delta_bias=rand(dim) * 0.1,
    )


def rel_err(out, ref):
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


@pytest.mark.parametrize("length", [1, 7, 63, 64, 65, 197])
@pytest.mark.parametrize("n_state,groups", [(1, None), (16, None), (4, 3)])
def test_chunked_matches_float64_recurrence(length, n_state, groups):
    x = random_scan_inputs(2, 6, length, n_state, groups)
    ref = selective_scan_ref(**x, delta_softplus=True)
    out = selective_scan_chunked(**x, delta_softplus=True)
    assert out.dtype == torch.float32 and out.shape == (2, 6, length)
    assert rel_err(out, ref) < 1e-5


def test_optional_terms_are_optional():
    x = random_scan_inputs(1, 4, 33, 2)
    for drop in ("D", "z", "delta_bias"):
        y = dict(x, **{drop: None})
        assert rel_err(selective_scan_chunked(**y), selective_scan_ref(**y)) < 1e-5


@pytest.mark.parametrize("n_state", [1, 16])
def test_large_decay_does_not_overflow(n_state):
    """Strong decay: the closed form's exp(-cumsum) would overflow if chunks were not shortened."""
    x = random_scan_inputs(1, 3, 200, n_state)
    x["A"] = -torch.full((3, n_state), 50.0)
    x["delta"] = x["delta"].abs() + 1.0
    out = selective_scan_chunked(**x)
    assert torch.isfinite(out).all()
    assert rel_err(out, selective_scan_ref(**x)) < 1e-5


@pytest.mark.parametrize("n_state", [1, 2])
def test_single_step_decay_beyond_float64_range_is_still_exact(n_state):
    """One step with dt*|A| = 800: e^800 overflows float64, so the closed form cannot hold that step
    even in a chunk of one; the scan must still return the recurrence's (finite) values."""
    x = random_scan_inputs(2, 3, 37, n_state)
    x["delta"] = x["delta"].abs()
    x["delta"][0, 1, 17] = 800.0
    x["A"] = -torch.ones(3, n_state)
    out = selective_scan_chunked(**x)
    assert torch.isfinite(out).all()
    assert rel_err(out, selective_scan_ref(**x)) < 1e-5


def test_half_precision_inputs_return_their_dtype():
    x = random_scan_inputs(1, 4, 50, 4, dtype=torch.bfloat16)
    out = selective_scan_chunked(**x)
    assert out.dtype == torch.bfloat16
    assert rel_err(out, selective_scan_ref(**x)) < 1e-2


def test_dispatch_uses_torch_on_cpu_and_honours_override(monkeypatch):
    monkeypatch.delenv("SSMZOO_SCAN", raising=False)
    assert scan_backend("cpu") == "torch"
    monkeypatch.setenv("SSMZOO_SCAN", "torch")
    assert scan_backend("cpu") == "torch"
    x = random_scan_inputs(1, 4, 9, 2)
    assert rel_err(selective_scan(**x), selective_scan_ref(**x)) < 1e-5
    monkeypatch.setenv("SSMZOO_SCAN", "cuda-magic")
    with pytest.raises(ValueError, match="SSMZOO_SCAN='cuda-magic': expected torch or triton"):
        scan_backend("cpu")
    monkeypatch.setenv("SSMZOO_SCAN", "triton")  # forced onto CPU tensors: said before any kernel launch
    with pytest.raises(ValueError, match="SSMZOO_SCAN=triton: the Triton scan (needs|runs on CUDA tensors)"):
        scan_backend("cpu")


@pytest.mark.parametrize("n_state,length", [(1, 37), (16, 29)])
def test_compiled_cpu_scan_is_one_graph_and_matches_eager(n_state, length):
    """Traced by torch.compile, the CPU scan is one opaque operator: no graph break at its
    data-dependent chunk length, no unrolled loop over positions, the same numbers."""
    x = random_scan_inputs(2, 6, length, n_state, groups=2)
    compiled = torch.compile(selective_scan, fullgraph=True, backend="eager")  # fullgraph: a break raises
    out = compiled(**x, delta_softplus=True)
    assert out.shape == (2, 6, length) and out.is_contiguous()
    assert torch.equal(out, selective_scan(**x, delta_softplus=True))
    assert rel_err(out, selective_scan_ref(**x, delta_softplus=True)) < 1e-5


def test_compiled_cpu_scan_that_autograd_records_still_has_gradients():
    x = random_scan_inputs(1, 4, 21, 1)
    x["u"].requires_grad_(True)
    torch.compile(selective_scan, backend="eager")(**x, delta_softplus=True).sum().backward()
    assert x["u"].grad is not None and torch.isfinite(x["u"].grad).all()


# --- arguments that do not fit the signature are refused by name, before any arithmetic ---------------

SCAN_FUNCTIONS = [selective_scan, selective_scan_ref, selective_scan_chunked]


def good_args():
    """u, delta (2, 4, 9); A (4, 16); B, C (2, 16, 9): the shapes every bad case below departs from."""
    return random_scan_inputs(2, 4, 9, 16, seed=0)


@pytest.mark.parametrize("fn", SCAN_FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("arg,shape,message", [
    ("B", (1, 16, 9), r"B has shape \(1, 16, 9\); expected \(2, 16, 9\) = \(batch, N, L\)"),   # batch 1 would broadcast
    ("C", (1, 16, 9), r"C has shape \(1, 16, 9\); expected \(2, 16, 9\)"),
    ("B", (2, 1, 9), r"B has shape \(2, 1, 9\); expected \(2, 16, 9\)"),                       # N = 1 vs A's 16
    ("B", (2, 16, 1), r"B has shape \(2, 16, 1\); expected \(2, 16, 9\)"),                     # L = 1 vs 9
    ("B", (2, 16), r"B has shape \(2, 16\); expected \(2, 16, 9\)"),
    ("D", (1,), r"D has shape \(1,\); expected \(4,\) = \(dim,\)"),                            # would broadcast
    ("delta_bias", (4, 1), r"delta_bias has shape \(4, 1\); expected \(4,\)"),
    ("A", (5, 16), r"A has shape \(5, 16\); expected \(4, N\) = \(dim, N\)"),
    ("A", (4,), r"A has shape \(4,\); expected \(4, N\)"),
    ("delta", (2, 4, 8), r"delta has shape \(2, 4, 8\); expected u's shape \(2, 4, 9\)"),
    ("z", (2, 4, 1), r"z has shape \(2, 4, 1\); expected u's shape \(2, 4, 9\)"),
    ("u", (4, 9), r"u has shape \(4, 9\); expected 3 dimensions \(batch, dim, L\)"),
])
def test_a_wrong_shape_is_a_value_error_naming_the_argument_and_the_expected_shape(fn, arg, shape, message):
    x = good_args()
    x[arg] = torch.randn(shape)
    with pytest.raises(ValueError, match=f"{fn.__name__}: {message}"):
        fn(**x)


@pytest.mark.parametrize("fn", SCAN_FUNCTIONS, ids=lambda f: f.__name__)
def test_groups_of_b_and_c_must_divide_the_channels_and_agree(fn):
    x = good_args()
    x["B"], x["C"] = torch.randn(2, 3, 16, 9), torch.randn(2, 3, 16, 9)
    with pytest.raises(ValueError, match=r"B and C have 3 groups .* do not divide u's 4 channels"):
        fn(**x)
    x["B"], x["C"] = torch.randn(2, 2, 16, 9), torch.randn(2, 16, 9)
    with pytest.raises(ValueError, match=r"C has shape \(2, 16, 9\); expected \(2, 2, 16, 9\) .* B's G = 2"):
        fn(**x)
    x["C"] = torch.randn(2, 2, 16, 9)
    assert fn(**x).shape == (2, 4, 9)


@pytest.mark.parametrize("fn", SCAN_FUNCTIONS, ids=lambda f: f.__name__)
def test_an_argument_that_is_not_a_tensor_is_a_type_error(fn):
    x = good_args()
    x["B"] = x["B"].numpy()
    with pytest.raises(TypeError, match=f"{fn.__name__}: B must be a torch.Tensor, got ndarray"):
        fn(**x)
    x = good_args()
    x["D"] = 1.0  # optional terms are None or a tensor
    with pytest.raises(TypeError, match="D must be a torch.Tensor, got float"):
        fn(**x)


def test_checked_arguments_still_compile_to_one_graph():
    """The check reads shapes only: torch.compile turns it into guards, no graph break."""
    x = good_args()
    out = torch.compile(selective_scan, fullgraph=True, backend="eager")(**x, delta_softplus=True)
    assert torch.equal(out, selective_scan(**x, delta_softplus=True))


# --- an empty sequence is an empty output, from every function and state width ----------------------

@pytest.mark.parametrize("fn", SCAN_FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("n_state,groups", [(1, None), (2, None), (16, None), (4, 2)])
def test_length_zero_gives_an_empty_output(fn, n_state, groups):
    x = random_scan_inputs(3, 4, 0, n_state, groups, seed=0)
    out = fn(**x, delta_softplus=True)
    assert out.shape == (3, 4, 0) and out.dtype == torch.float32


@pytest.mark.parametrize("fn", SCAN_FUNCTIONS, ids=lambda f: f.__name__)
def test_an_empty_batch_gives_an_empty_output(fn):
    x = random_scan_inputs(0, 4, 9, 1, seed=0)
    assert fn(**x).shape == (0, 4, 9)


def test_available_backends_are_those_ssmzoo_scan_accepts_here(monkeypatch):
    """Triton is listed only where it can run: on a machine without CUDA, SSMZOO_SCAN=triton is refused."""
    from ssmzoo.ops import available_backends

    backends = available_backends()
    assert "torch" in backends
    for name in backends:
        monkeypatch.setenv("SSMZOO_SCAN", name)
        assert scan_backend() == name
    if not torch.cuda.is_available():
        assert "triton" not in backends
