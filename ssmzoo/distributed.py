"""torch.distributed for evaluation under ``torchrun``: one process per GPU (or CPU process with gloo),
explicit index sharding, results gathered on every rank and reported by rank 0.

A run that is not started by torchrun (no ``WORLD_SIZE`` > 1 in the environment) gets a single-process
context and never touches torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

import torch

from .errors import SsmzooError

T = TypeVar("T")


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: Optional[str] = None  # None: not distributed

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> list[int]:
        """Item indices of this rank: ``rank, rank + world, ...`` -- every item exactly once over all ranks,
        whether or not ``world_size`` divides ``n`` (unlike DistributedSampler, which pads with repeats)."""
        return list(range(self.rank, n, self.world_size))

    def all_gather(self, obj: T) -> list[T]:
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def main_computes(self, fn: Callable[[], T]) -> T:
        """Runs ``fn`` on rank 0 only and hands its result (or its user error) to every rank, so all
        ranks agree on e.g. the dataset listing and fail together instead of hanging in a collective."""
        if not self.enabled:
            return fn()
        import torch.distributed as dist

        box: list[Any] = [None, None]
        if self.is_main:
            try:
                box = [fn(), None]
            except SsmzooError as exc:
                box = [None, exc]
            except BaseException as exc:  # noqa: BLE001 -- tell the other ranks, then re-raise here
                dist.broadcast_object_list([None, SsmzooError(f"rank 0 failed: {type(exc).__name__}: {exc}")], src=0)
                raise
        dist.broadcast_object_list(box, src=0)
        if box[1] is not None:
            raise box[1]
        return box[0]

    def main_first(self, fn: Callable[[], T]) -> T:
        """Runs ``fn`` on rank 0, then on the other ranks (e.g. a weights download into a shared cache)."""
        if not self.enabled:
            return fn()
        result: Any = None
        error: Optional[BaseException] = None
        if self.is_main:
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001
                error = exc
        flags = self.all_gather(None if error is None else str(error))
        if flags[0] is not None:
            if error is not None:
                raise error
            raise SsmzooError(flags[0])
        if not self.is_main:
            try:
                result = fn()
            except BaseException as exc:  # noqa: BLE001
                error = exc
        flags = self.all_gather(None if error is None else str(error))
        failed = next((f for f in flags if f is not None), None)
        if failed is not None:
            if error is not None:
                raise error
            raise SsmzooError(failed)
        return result

    def close(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def init_from_env(device: str = "auto") -> tuple[DistContext, str]:
    """The context for this process and the device string it should use.

    Under torchrun with CUDA: ``cuda:LOCAL_RANK`` and NCCL; on CPU: gloo. ``device`` is the user's
    ``--device`` (``auto``, ``cpu``, ``cuda``; an explicit ``cuda:N`` is replaced by the local rank's GPU).
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DistContext(), device
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if device != "auto":  # (a typo must not silently become the CPU; cuda needs a GPU here)
        from .factory import parse_device

        parse_device(device)
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise SsmzooError(f"local rank {local_rank} has no GPU: {torch.cuda.device_count()} visible, "
                              f"--nproc-per-node must not exceed that")
        torch.cuda.set_device(local_rank)
        device, backend = f"cuda:{local_rank}", "nccl"
    else:
        device, backend = "cpu", "gloo"
    if not dist.is_initialized():
        kwargs = {"device_id": torch.device(device)} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, **kwargs)
    return DistContext(rank, world, local_rank, local_world, backend), device
