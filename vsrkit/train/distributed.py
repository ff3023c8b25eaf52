"""torch.distributed glue for the reference recipe (one process or many under ``torchrun``).

Components stay pure: they take a ``broadcast`` function or plain floats; this module provides
those functions. Rank 0 reads files and serves the monitor; every rank applies the same
decisions at the same step; only rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

import torch
import torch.distributed as dist

from vsrkit.train.errors import DeviceUnavailableError

__all__ = ["DistContext", "init_distributed"]


@dataclasses.dataclass
class DistContext:
    """Where this process stands: rank, world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def broadcast(self, obj: Any) -> Any:
        """Send ``obj`` from rank 0 to every rank; returns rank 0's object everywhere."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """All-reduce a tensor to its mean over ranks (a copy; the input is left alone)."""
        if not self.distributed:
            return values
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def same_everywhere(self, tensors: list[torch.Tensor]) -> bool:
        """True if ``tensors`` hold exactly the same values on every rank (rank 0's broadcast)."""
        if not self.distributed:
            return True
        flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
        ref = flat.clone()
        dist.broadcast(ref, src=0)
        return not self.any(not torch.equal(ref, flat))

    def agreed_commands(self, actions: Any, step: int, every: int) -> list[str]:
        """Commands queued by the monitor (an ``ActionQueue`` on rank 0), the same on every
        rank: under DDP rank 0's list is broadcast at log intervals only."""
        if not self.distributed:
            return [a.command for a in actions.drain()] if actions is not None else []
        if step % every:
            return []
        local = [a.command for a in actions.drain()] if actions is not None and self.is_main else []
        return list(self.broadcast(local))

    def agreed_stop(self, requested: bool, step: int, every: int) -> bool:
        """A stop request, agreed by all ranks at log intervals (so they stop at one step)."""
        if not self.distributed:
            return requested
        return self.any(requested) if step % every == 0 else False

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1), pick the device.

    Args:
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.

    Raises:
        DeviceUnavailableError: ``cuda`` where torch sees no CUDA device, or a ``LOCAL_RANK`` past
            the devices there are.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda and not torch.cuda.is_available():
        why = "a build without CUDA" if torch.version.cuda is None else "no CUDA device visible"
        raise DeviceUnavailableError(
            f"--device cuda: torch {torch.__version__} sees no GPU here ({why}); "
            "use --device cpu or auto"
        )
    if use_cuda and local >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"LOCAL_RANK={local}, but {torch.cuda.device_count()} CUDA device(s) are visible; "
            "start at most that many processes per node"
        )
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(minutes=10),
            device_id=dev if use_cuda else None,
        )
    return DistContext(rank=rank, world_size=world, local_rank=local, device=dev)
