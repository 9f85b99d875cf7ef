"""Side-by-side timing of model-code variants on single GroupMamba blocks, every variant in one process.

    PYTHONPATH=. python3 benchmarks/ab_block.py --variants base,AB_UNALIGNED [--stages 1,3] [--rounds 3]

Whole-model A/B runs (``ab_variant.py``) put each variant in its own process, and processes on one
machine differ by ~1%, as large as the changes now being tried. Here each stage's ``Block`` (random
weights, batch 128, 224x224 input's map size) is compiled once per variant with the model's own
Inductor settings under bf16 autocast (as ``ssmzoo benchmark --compile --cuda-graphs --dtype bf16``
runs it), captured in a CUDA graph, and the graphs are timed in turns (``--rounds``), so drift hits
all variants alike. A variant is ``base`` (the code as it is) or a "+"-joined list of
``ab_switches.ATTRIBUTE_SWITCHES`` names; one named twice is compiled twice, which shows how far two
compiles of the same code differ (session 19: up to ~6 us per block, while the rounds of one
compiled graph agree within ~0.5 us). Prints the median time per block and, times the stage's
depth, per forward. Stage 0 is the stem (``patch_embed1``, from a 224x224 image batch to tokens).
"""
from __future__ import annotations

import argparse
import statistics

import timm
import torch
import triton.testing

import ssmzoo  # noqa: F401  (registers the models)
import ssmzoo.models.groupmamba as gm
from ab_switches import ATTRIBUTE_SWITCHES
from ssmzoo.factory import compile_model
from ssmzoo.inference import capture_cuda_graph


def apply(variant: str) -> dict:
    """Sets the variant's switches; returns the attributes' previous values (for ``restore``)."""
    saved = {}
    for name in [] if variant == "base" else variant.split("+"):
        module, attribute, value = ATTRIBUTE_SWITCHES[name]
        saved[(module, attribute)] = getattr(module, attribute)
        setattr(module, attribute, value)
    return saved


def restore(saved: dict) -> None:
    for (module, attribute), value in saved.items():
        setattr(module, attribute, value)


class Wrapped(torch.nn.Module):
    """A Block with the model's Inductor settings (``compile_model`` reads ``inductor_options``)."""

    inductor_options = gm.GroupMamba.inductor_options

    def __init__(self, block: gm.Block, size: int) -> None:
        super().__init__()
        self.block, self.size = block, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.block, gm.Stem):
            return self.block(x)[0]
        return self.block(x, self.size, self.size)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="groupmamba_tiny")
    ap.add_argument("--variants", default="base", help="comma-separated: base or '+'-joined switch names")
    ap.add_argument("--stages", default="1,2,3,4", help="1-based stage numbers; 0 is the stem")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    variants = args.variants.split(",")
    for v in variants:
        unknown = [n for n in ([] if v == "base" else v.split("+")) if n not in ATTRIBUTE_SWITCHES]
        if unknown:
            raise SystemExit(f"unknown switch(es) {unknown}; known: {', '.join(ATTRIBUTE_SWITCHES)}")
    model = timm.create_model(args.model)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; {args.model} blocks, batch {args.batch}, "
          f"bf16 autocast, compiled + CUDA graph; median of {args.rounds} rounds", flush=True)
    for stage in map(int, args.stages.split(",")):
        if stage == 0:
            block, size, depth = model.patch_embed1, 224, 1
            channels = block.conv[0].in_channels
            x = torch.randn(args.batch, channels, size, size, device="cuda")
            for m in block.modules():  # batch-norm statistics away from the identity, so the fold is exercised
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.normal_()
                    m.running_var.uniform_(0.5, 2.0)
        else:
            block = getattr(model, f"block{stage}")[0]
            size = 224 // 2 ** (stage + 1)
            channels = block.norm2.normalized_shape[0]
            depth = len(getattr(model, f"block{stage}"))
            x = torch.randn(args.batch, size * size, channels, device="cuda")
        block = block.eval().cuda().requires_grad_(False)
        graphs = []
        for v in variants:
            saved = apply(v)
            try:
                torch._dynamo.reset()
                compiled = compile_model(Wrapped(block, size), fullgraph=True)

                def forward():
                    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                        return compiled(x)
                graphs.append(capture_cuda_graph(forward, torch.device("cuda")))
            finally:
                restore(saved)
        ref = graphs[0][1].float()
        times = [[] for _ in variants]
        for _ in range(args.rounds):
            for i, (graph, _) in enumerate(graphs):
                times[i].append(triton.testing.do_bench(graph.replay, warmup=25, rep=200))
        for i, v in enumerate(variants):
            graph, out = graphs[i]
            graph.replay()
            torch.cuda.synchronize()
            err = ((out.float() - ref).norm() / ref.norm()).item()
            ms = statistics.median(times[i])
            print(f"  stage {stage} (C{channels} {size}x{size}, depth {depth})  {v:<40} {ms * 1e3:8.1f} us/block "
                  f"{ms * depth * 1e3:8.1f} us/forward  rounds {' '.join('%.1f' % (t * 1e3) for t in times[i])}  "
                  f"rel diff vs {variants[0]} {err:.1e}", flush=True)


if __name__ == "__main__":
    main()
