"""BatchRunner and Pipeline: the part of `eval`/`robustness` that feeds batches to the model.

The CPU tests pin down the arithmetic (chunking, view averaging, top-k, callback order); the CUDA tests
(skipped without a GPU) check that the staged, pipelined and graph-replayed path predicts what the plain
eager forward predicts, on a real GroupMamba.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import timm
import torch
from torch import nn

import ssmzoo  # noqa: F401
from ssmzoo.errors import SsmzooError
from ssmzoo.inference import BatchRunner, Pipeline

cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _loaded(model: nn.Module, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """What BatchRunner reads from a LoadedModel."""
    return SimpleNamespace(model=model.eval().to(device), device=torch.device(device), dtype=dtype,
                           entry=SimpleNamespace(name="test-model"))


def _expected(model: nn.Module, x: torch.Tensor, views: int) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        p = model(x).float().softmax(-1)
    return p.view(x.shape[0] // views, views, -1).mean(1).topk(5, dim=-1)


def test_cpu_chunks_average_views_and_return_top5():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 11))
    x = torch.randn(12, 3, 4, 5)  # 4 items x 3 views, pushed through in chunks of 5 rows
    runner = BatchRunner(_loaded(model), rows=5)
    values, indices = runner.collect(runner.submit(x, views=3))
    ref_v, ref_i = _expected(model, x, 3)
    assert indices.shape == (4, 5)
    assert torch.equal(indices, ref_i)
    torch.testing.assert_close(values, ref_v, rtol=1e-6, atol=1e-7)
    assert runner.mode == "eager"


def test_video_batches_of_shape_b_v_are_flattened_to_views():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 3 * 3, 7))
    x = torch.randn(2, 4, 3, 2, 3, 3)  # (B, V, 3, T, S, S)
    runner = BatchRunner(_loaded(model), rows=64)
    values, indices = runner.collect(runner.submit(x, views=4))
    ref_v, ref_i = _expected(model, x.flatten(0, 1), 4)
    assert torch.equal(indices, ref_i)
    torch.testing.assert_close(values, ref_v)


def test_pipeline_calls_back_in_submission_order_one_batch_behind():
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 9))
    runner = BatchRunner(_loaded(model), rows=4)
    done: list[int] = []
    with Pipeline(depth=1) as pipeline:
        for k in range(4):
            pipeline.submit(runner, torch.randn(3, 6), 1, lambda v, i, k=k: done.append(k))
            assert done == list(range(k))  # batch k is collected once k + 1 is in flight
    assert done == [0, 1, 2, 3]


def test_pipeline_drops_pending_batches_when_the_loop_fails():
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 9))
    runner = BatchRunner(_loaded(model), rows=4)
    done: list[int] = []
    with pytest.raises(RuntimeError, match="reader broke"):
        with Pipeline() as pipeline:
            pipeline.submit(runner, torch.randn(2, 6), 1, lambda v, i: done.append(0))
            raise RuntimeError("reader broke")
    assert done == []


def test_cuda_graphs_need_a_cuda_model():
    with pytest.raises(SsmzooError, match="--cuda-graphs needs a CUDA device"):
        BatchRunner(_loaded(nn.Linear(2, 2)), rows=4, cuda_graphs=True)


@cuda_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_graph_replay_predicts_what_the_eager_forward_predicts(dtype):
    """Full batches replay the captured kernels (bitwise equal); the short last batch is zero-padded."""
    torch.manual_seed(0)
    model = timm.create_model("groupmamba_tiny").cuda().eval()
    loaded = _loaded(model, "cuda", dtype)
    batches = [torch.randn(16, 3, 224, 224) for _ in range(3)] + [torch.randn(5, 3, 224, 224)]
    eager = BatchRunner(loaded, rows=16)
    graphed = BatchRunner(loaded, rows=16, cuda_graphs=True)
    assert graphed.mode == "CUDA graphs"
    got: dict[str, list] = {"eager": [], "graphs": []}
    with Pipeline() as pipeline:
        for x in batches:
            for name, runner in (("eager", eager), ("graphs", graphed)):
                pipeline.submit(runner, x, 1, lambda v, i, name=name: got[name].append((v.clone(), i.clone())))
    assert len(got["graphs"]) == len(batches)
    for k, ((ve, ie), (vg, ig)) in enumerate(zip(got["eager"], got["graphs"])):
        if k < 3:
            assert torch.equal(ie, ig) and torch.equal(ve, vg), f"batch {k}"
        else:  # padded to 16 rows: other GEMM shapes, so only float rounding may differ
            assert (ie[:, 0] == ig[:, 0]).all()
            torch.testing.assert_close(vg, ve, rtol=2e-2 if dtype == torch.bfloat16 else 1e-4, atol=1e-5)
    assert pipeline.idle_s >= 0.0


@cuda_only
def test_runner_staging_ring_survives_growing_batches():
    """Batches of growing size reallocate the pinned/device staging buffers while others are in flight."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    runner = BatchRunner(_loaded(model, "cuda"), rows=64)
    xs = [torch.randn(n, 3, 8, 8) for n in (2, 3, 9, 9, 33, 4, 64)]
    got = []
    with Pipeline(depth=2) as pipeline:
        for x in xs:
            pipeline.submit(runner, x, 1, lambda v, i: got.append(i.clone()))
    for x, indices in zip(xs, got):
        assert torch.equal(indices, _expected(model, x.cuda(), 1)[1].cpu())
