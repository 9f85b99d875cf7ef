"""Batched top-k prediction for ``eval`` and ``robustness``: keeps the GPU fed and its launch cost low.

What made ``ssmzoo eval`` slow on a GPU (H100, GroupMamba-T, bf16, batch 128; docs/gpu_runs/eval_diag.txt):

* ``DataLoader(pin_memory=True)`` pins every batch in flight (workers x prefetch of them, ~2.5 GB at
  batch 128) through fresh page-locked allocations at the start of a run, while the first forward took
  8.2 s (16 such buffers alone took 1.1 s to allocate; the rest was not attributed). Here each batch
  is staged through a ring of two pinned buffers allocated once, and copied to the GPU on a side stream.
* The eager model issues ~1,400 kernel launches per forward; with the decoding workers busy on the
  same CPUs the forward became launch-bound (74-150 ms instead of 54 ms). ``cuda_graphs=True`` replays
  one captured forward per batch (same kernels, so the same numbers), and ``compile=True`` adds
  ``torch.compile``. Batches smaller than the captured one are zero-padded, so one shape serves all.
* The caller submits batch i + 1 before it collects batch i (``submit`` returns at once on CUDA), so
  decoding, staging and the copy overlap the forward. The time the GPU sat idle between batches is
  measured with CUDA events (``Pipeline.idle_s``): that is the share of the wall time the model waited.

On CPU everything runs eagerly and synchronously, as before.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, TypeVar

import torch
from torch import Tensor

from .errors import SsmzooError, UsageError
from .factory import LoadedModel, autocast, check_cuda_graphs, compile_model, cpu_half_note

T = TypeVar("T")
TOP_K = 5


def capture_cuda_graph(forward: Callable[[], T], device: torch.device, warmup: int = 3) -> tuple[torch.cuda.CUDAGraph, T]:
    """Warms ``forward`` up on a side stream (as ``torch.cuda.graph`` requires), then captures one call.

    Returns the graph and the output of the captured call, whose tensors each ``graph.replay()`` refills.
    Any autocast inside ``forward`` must not cache weight casts across the capture (pass
    ``cache_enabled=False``, or run with parameters that do not require grad).
    """
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            forward()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = forward()
    return graph, out


@dataclass
class Ticket:
    """A submitted batch: top-k (probabilities, indices), on the host once ``end`` has completed (CUDA);
    ``start``/``end`` bracket its work on the compute stream."""

    values: Tensor
    indices: Tensor
    start: Optional[torch.cuda.Event] = None
    end: Optional[torch.cuda.Event] = None


@dataclass
class _Slot:
    """One staging buffer pair: page-locked host memory and its device twin, with the events guarding them."""

    host: Optional[Tensor] = None
    device: Optional[Tensor] = None
    copied: Optional[torch.cuda.Event] = None  # the host->device copy from ``host`` has finished
    consumed: Optional[torch.cuda.Event] = None  # the compute stream has finished reading ``device``

    def buffers(self, like: Tensor, dev: torch.device) -> tuple[Tensor, Tensor]:
        if self.host is None or self.host.numel() < like.numel() or self.host.dtype != like.dtype:
            if self.copied is not None:
                self.copied.synchronize()
            if self.consumed is not None:
                self.consumed.synchronize()
            self.host = torch.empty(like.numel(), dtype=like.dtype, pin_memory=True)
            self.device = torch.empty(like.numel(), dtype=like.dtype, device=dev)
        n = like.numel()
        return self.host[:n].view(like.shape), self.device[:n].view(like.shape)


def model_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's longest list of blocks (VideoMamba's 24 to 32 ``layers``), or none: what a progress
    display counts within one forward pass."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    return list(max(lists, key=len)) if lists else []


@contextlib.contextmanager
def hearing_blocks(model: torch.nn.Module, on_block: Callable[[int, int], None]) -> Iterator[int]:
    """Within the ``with``, ``on_block(layer, layers)`` is told as each forward pass leaves the ``layer``-th
    (from 1) of ``model_blocks``' ``layers``; yields ``layers`` (0: nothing to count). Forward hooks, removed
    on leaving, which change no numbers: for eager forwards only (``classify`` on a video, ``eval`` of video
    datasets on a CPU), as a CUDA graph's replay or a compiled forward would not run them, or would break
    on them."""
    blocks = model_blocks(model)
    handles = [block.register_forward_hook(lambda *_, layer=layer: on_block(layer, len(blocks)))
               for layer, block in enumerate(blocks, 1)]
    try:
        yield len(blocks)
    finally:
        for handle in handles:
            handle.remove()


class BatchRunner:
    """Top-k predictions of one model for batches of CPU tensors.

    ``submit(batch, views)`` takes (B * views, ...) rows, or (B, views, ...); a row chunk of at most
    ``rows`` goes through the model at a time, and each item's ``views`` rows are softmax-averaged.
    ``preprocess`` (on the device, before the model) lets callers ship compact inputs, e.g. uint8.
    ``cuda_graphs``: True (asked for: a failed capture is an error), False, or None (the default of
    ``eval``/``robustness``: on for a CUDA model, same kernels and numbers; a failed capture falls back
    to eager with a note).
    """

    def __init__(self, loaded: LoadedModel, rows: int, *, cuda_graphs: Optional[bool] = False, compile: bool = False,
                 preprocess: Optional[Callable[[Tensor], Tensor]] = None) -> None:
        if rows < 1:
            raise UsageError(f"--batch-size {rows}: expected a positive number")
        self.loaded, self.rows, self.preprocess = loaded, rows, preprocess
        self.cuda = loaded.device.type == "cuda"
        check_cuda_graphs(bool(cuda_graphs), loaded.device)
        self.graphs_required = bool(cuda_graphs)
        self.cuda_graphs = self.cuda if cuda_graphs is None else cuda_graphs
        self.compiled = compile
        self.fn: Callable[[Tensor], Tensor] = compile_model(loaded.model, dynamic=False) if compile else loaded.model
        self.static_shapes = self.cuda_graphs or compile  # pad every chunk to ``rows``: one shape, one graph/compile
        self._graph: Optional[torch.cuda.CUDAGraph] = None
        self._static_in: Optional[Tensor] = None
        self._static_out: Optional[Tensor] = None
        self._slots = [_Slot(), _Slot()] if self.cuda else []
        self._next_slot = 0
        self._copy_stream = torch.cuda.Stream(loaded.device) if self.cuda else None
        self.notes: list[str] = [note for note in (cpu_half_note(loaded.device, loaded.dtype),) if note]

    # -- the model on one chunk ------------------------------------------------------------------
    def _autocast(self, for_capture: bool = False):
        if for_capture and self.loaded.dtype != torch.float32:
            # no weight-cast cache: cached casts would be freed after capture while the graph keeps using them
            return torch.autocast(self.loaded.device.type, dtype=self.loaded.dtype, cache_enabled=False)
        return autocast(self.loaded.device, self.loaded.dtype)

    def _logits(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        if not self.static_shapes:
            with self._autocast():
                return self.fn(x)
        if n < self.rows:  # zero rows to the one shape; eval-mode models treat rows independently
            x = torch.cat([x, x.new_zeros(self.rows - n, *x.shape[1:])])
        if not self.cuda_graphs:
            with self._autocast():
                return self.fn(x)[:n]
        if self._graph is None or self._static_in.shape != x.shape or self._static_in.dtype != x.dtype:
            if not self._capture(x):
                with self._autocast():
                    return self.fn(x)[:n]
        self._static_in.copy_(x)
        self._graph.replay()
        return self._static_out[:n]

    def _capture(self, x: Tensor) -> bool:
        """Captures the forward for ``x``'s shape; False (eager from now on) where capture fails and
        graphs were only the default."""
        self._static_in = x.clone()

        def forward() -> Tensor:
            with self._autocast(for_capture=True):
                return self.fn(self._static_in)

        try:
            self._graph, self._static_out = capture_cuda_graph(forward, self.loaded.device)
        except torch.OutOfMemoryError:
            raise SsmzooError(f"{self.loaded.entry.name}: out of memory capturing a CUDA graph at batch "
                              f"{self.rows} (use a smaller --batch-size)") from None
        except Exception as exc:
            why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            if self.graphs_required:
                raise SsmzooError(f"{self.loaded.entry.name}: --cuda-graphs: capture failed ({why}); "
                                  "run with --no-cuda-graphs") from None
            self.cuda_graphs, self._graph, self._static_in = False, None, None
            self.static_shapes = self.compiled
            self.notes.append(f"CUDA graph capture failed ({why}); ran eagerly")
            return False
        return True

    def passes(self, n: int) -> list[int]:
        """The rows of each forward pass the model makes of ``n`` rows: ``rows`` at a time, the rest last."""
        return [min(self.rows, n - s) for s in range(0, n, self.rows)]

    def _top(self, x: Tensor, items: int, views: int) -> tuple[Tensor, Tensor]:
        if x.dim() == 6:
            x = x.flatten(0, 1)  # (B, V, 3, T, S, S) -> (B*V, 3, T, S, S)
        if self.preprocess is not None:
            x = self.preprocess(x)
        probs = [self._logits(part).float().softmax(dim=-1) for part in x.split(self.passes(x.shape[0]))]
        p = torch.cat(probs).view(items, views, -1).mean(dim=1)
        return p.topk(min(TOP_K, p.shape[-1]), dim=-1)

    # -- submit / collect ------------------------------------------------------------------------
    @torch.inference_mode()
    def submit(self, batch: Tensor, views: int = 1) -> Ticket:
        """Starts the forward of ``batch`` (CPU); returns at once on CUDA. ``views`` rows make one item."""
        items = batch.shape[0] if batch.dim() == 6 else batch.shape[0] // views
        if not self.cuda:
            values, indices = self._top(batch.to(self.loaded.device), items, views)
            return Ticket(values, indices)
        with torch.cuda.device(self.loaded.device):  # streams, events and graph capture on the model's GPU
            return self._submit_cuda(batch, items, views)

    def _submit_cuda(self, batch: Tensor, items: int, views: int) -> Ticket:
        dev = self.loaded.device
        compute = torch.cuda.current_stream(dev)
        slot = self._slots[self._next_slot]
        self._next_slot = (self._next_slot + 1) % len(self._slots)
        host, staged = slot.buffers(batch, dev)
        if slot.copied is not None:
            slot.copied.synchronize()  # the previous copy out of ``host`` is done: it may be overwritten
        host.copy_(batch)
        with torch.cuda.stream(self._copy_stream):
            if slot.consumed is not None:
                self._copy_stream.wait_event(slot.consumed)
            staged.copy_(host, non_blocking=True)
            slot.copied = torch.cuda.Event()
            slot.copied.record(self._copy_stream)
        compute.wait_event(slot.copied)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(compute)
        values, indices = self._top(staged, items, views)
        slot.consumed = torch.cuda.Event()
        slot.consumed.record(compute)
        out_v = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
        out_i = torch.empty(indices.shape, dtype=indices.dtype, pin_memory=True)
        out_v.copy_(values, non_blocking=True)
        out_i.copy_(indices, non_blocking=True)
        end.record(compute)
        return Ticket(out_v, out_i, start=start, end=end)

    def collect(self, ticket: Ticket) -> tuple[Tensor, Tensor]:
        """Waits for a submitted batch (tickets in submission order) and returns its top-k on the host."""
        if ticket.end is not None:
            ticket.end.synchronize()
        return ticket.values, ticket.indices

    @property
    def mode(self) -> str:
        parts = (["torch.compile"] if self.compiled else []) + (["CUDA graphs"] if self.cuda_graphs else [])
        return " + ".join(parts) if parts else "eager"


class Pipeline:
    """Keeps ``depth`` submitted batches in flight: ``submit(runner, batch, views, on_done)`` returns at once
    on CUDA, and ``on_done(values, indices)`` runs when the batch is collected, in submission order, once
    ``depth`` later batches are in flight (or at the end of the ``with`` block). So the loop reads and
    stages its next batch while the GPU computes this one.

    ``idle_s`` adds up the GPU's idle time between consecutive batches (CUDA events on the compute
    stream, whichever runner submitted them): time the model waited for its input. ``gpu_ms`` and
    ``idle_ms`` keep the per-batch figures (GPU time of each batch, idle gap before it).
    """

    def __init__(self, depth: int = 1) -> None:
        self.depth = depth
        self.gpu_ms: list[float] = []
        self.idle_ms: list[float] = []
        self._pending: list[tuple[BatchRunner, Ticket, Callable[[Tensor, Tensor], None]]] = []
        self._last_end: Optional[torch.cuda.Event] = None

    def submit(self, runner: BatchRunner, batch: Tensor, views: int, on_done: Callable[[Tensor, Tensor], None]) -> None:
        self._pending.append((runner, runner.submit(batch, views), on_done))
        self.drain(self.depth)

    def drain(self, keep: int = 0) -> None:
        while len(self._pending) > keep:
            runner, ticket, on_done = self._pending.pop(0)
            values, indices = runner.collect(ticket)
            if ticket.start is not None:
                if self._last_end is not None:
                    self.idle_ms.append(max(0.0, self._last_end.elapsed_time(ticket.start)))
                self.gpu_ms.append(ticket.start.elapsed_time(ticket.end))
                self._last_end = ticket.end
            on_done(values, indices)

    @property
    def idle_s(self) -> float:
        return sum(self.idle_ms) / 1e3

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, exc_type, *_: Any) -> None:
        if exc_type is None:
            self.drain(0)
        else:
            self._pending.clear()
