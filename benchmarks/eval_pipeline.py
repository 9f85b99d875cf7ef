"""Per-batch GPU time inside ssmzoo eval (BatchRunner + Pipeline): start-up against steady state.

    python benchmarks/eval_pipeline.py DATA_DIR WEIGHTS   (an ImageNet val tree; a GroupMamba-T checkpoint; CUDA)
"""
import statistics as st, sys, time
from pathlib import Path
import ssmzoo.evaluate as ev
from ssmzoo.datasets import build_dataset
from ssmzoo.factory import load_model
from ssmzoo.manifest import load_manifest

seen = []
class Recording(ev.Pipeline):
    def __exit__(self, *a):
        super().__exit__(*a); seen.append(self)
ev.Pipeline = Recording
entry = load_manifest()["groupmamba_tiny"]
data = build_dataset("imagenet", entry, Path(sys.argv[1]))
loaded = load_model(entry, weights=sys.argv[2], device="cuda", dtype="bf16", progress=False)
for graphs in (True, False):
    t = time.perf_counter()
    r = ev.evaluate(loaded, data, batch_size=128, cuda_graphs=graphs)
    p = seen[-1]
    print(f"cuda_graphs={graphs}: {r.evaluated} images, loop {r.wall_s:.2f} s = {r.items_per_s:.0f} img/s, waiting {r.data_wait_fraction:.1%}, workers {r.workers}")
    print(f"  batches {len(p.gpu_ms)}; first batch GPU span {p.gpu_ms[0]:.0f} ms (capture/warm-up); later batches: median {st.median(p.gpu_ms[1:]):.1f} ms GPU, "
          f"sum {sum(p.gpu_ms[1:])/1e3:.2f} s; idle gaps sum {p.idle_s:.2f} s (median {st.median(p.idle_ms):.1f} ms)")
    steady = (r.evaluated - 128) / (sum(p.gpu_ms[1:]) / 1e3 + p.idle_s)
    print(f"  steady state after the first batch: {steady:.0f} img/s; GPU-bound rate at the median: {128e3 / st.median(p.gpu_ms[1:]):.0f} img/s")
