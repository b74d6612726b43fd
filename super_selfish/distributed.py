"""Helpers over ``torch.distributed`` that are no-ops in a single process.

Every function here can be called unconditionally: with one process (no process group, or a
group of size 1) it returns its input or a trivial answer without communicating.

Gradient convention. :class:`torch.nn.parallel.DistributedDataParallel` *averages* gradients
over the ``W`` processes. The collectives with autograd below (:func:`gather_with_grad`,
:func:`all_reduce_with_grad`) therefore *sum* the incoming gradients of all processes in their
backward pass: each process ends up with ``sum_j dL_j/dx_local``, DDP divides by ``W``, and the
update is the gradient of ``mean_j L_j``, i.e. of the loss one process would compute on the
global batch ``W x B``. ``tests/integrations/test_distributed.py`` checks this against a single
process.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.nn as nn

from .errors import ConfigError

# Devices on which torch's own (fused) SyncBatchNorm works; elsewhere (CPU) ours is used.
_NATIVE_SYNC_BN_DEVICES = ("cuda", "hpu", "xpu")


def is_distributed() -> bool:
    """True once a process group has been initialised (by us or by the user)."""
    return dist.is_available() and dist.is_initialized()


def rank(group: Any = None) -> int:
    """This process's rank in ``group`` (default: the world), 0 without a process group."""
    return dist.get_rank(group) if is_distributed() else 0


def world_size(group: Any = None) -> int:
    """Processes in ``group`` (default: the world), 1 without a process group."""
    return dist.get_world_size(group) if is_distributed() else 1


def local_rank() -> int:
    """Index of this process on its node (``LOCAL_RANK`` set by torchrun), else 0."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the one that writes files and logs."""
    return rank() == 0


def launched_distributed() -> bool:
    """True under a multi-process launcher (torchrun sets ``WORLD_SIZE``) or in a group > 1."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or world_size() > 1


def barrier() -> None:
    """Wait for every process (no-op without a process group)."""
    if is_distributed() and world_size() > 1:
        dist.barrier()


# ---------------------------------------------------------------------------- gathers
def _all_gather(tensor: torch.Tensor, group: Any) -> torch.Tensor:
    tensor = tensor.contiguous()
    parts = [
        torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.device)
        for _ in range(world_size(group))
    ]
    dist.all_gather(parts, tensor, group=group)
    return torch.cat(parts)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward gives each process the summed gradient of its own slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group: Any) -> torch.Tensor:  # type: ignore[override]
        ctx.n, ctx.group = tensor.shape[0], group
        return _all_gather(tensor, group)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        # Every process's loss depends on every slice: sum the gradients of all processes
        # (DDP then divides by the world size), then keep this process's rows.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        start = rank(ctx.group) * ctx.n
        return grad[start : start + ctx.n], None


def gather_with_grad(tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Concatenate ``tensor`` from all processes along dim 0 (rank order), keeping gradients.

    Every process must pass a tensor of the same shape (the training loader drops incomplete
    batches, so per-process batches are always equal).

    Args:
        tensor: this process's rows.
        group: the process group; None for the world.

    Returns:
        ``tensor`` itself in a single process, else the (world size * N, ...) concatenation.
    """
    if world_size(group) == 1:
        return tensor
    return _GatherWithGrad.apply(tensor, group)


@torch.no_grad()
def gather(tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Concatenate ``tensor`` from all processes along dim 0 in rank order (no gradient)."""
    if world_size(group) == 1:
        return tensor
    return _all_gather(tensor, group)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group: Any) -> torch.Tensor:  # type: ignore[override]
        ctx.group = group
        out = tensor.contiguous().clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def all_reduce_with_grad(tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Sum of ``tensor`` over all processes, differentiable (backward sums the gradients)."""
    if world_size(group) == 1:
        return tensor
    return _AllReduceSum.apply(tensor, group)


def all_reduce_sum(*values: float) -> tuple[float, ...]:
    """Element-wise sums of several scalars over all processes, in one collective."""
    if world_size() == 1:
        return tuple(float(v) for v in values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return tuple(float(v) for v in t)


def any_process(flag: bool | torch.Tensor) -> bool:
    """True when ``flag`` is true on at least one process (a collective: call it everywhere)."""
    if world_size() == 1:
        return bool(flag)
    t = torch.tensor([1.0 if bool(flag) else 0.0], device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_processes(flag: bool | torch.Tensor) -> bool:
    """True when ``flag`` is true on every process (a collective: call it everywhere)."""
    return not any_process(not bool(flag))


def broadcast_int(value: int, src: int = 0) -> int:
    """``value`` of process ``src`` on every process (e.g. a random seed drawn on rank 0)."""
    if world_size() == 1:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=_comm_device())
    dist.broadcast(t, src=src)
    return int(t.item())


def _comm_device() -> torch.device:
    """Device for small control tensors: NCCL needs CUDA tensors, gloo takes CPU tensors."""
    if is_distributed() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ---------------------------------------------------------------------------- MoCo shuffle-BN
@torch.no_grad()
def batch_shuffle(
    x: torch.Tensor, generator: Optional[torch.Generator] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo's shuffle-BN: a random permutation of the *global* batch, this process's share.

    Returns ``(x_shuffled, unshuffle_index)``; pass the key encoder's output and the index to
    :func:`batch_unshuffle` to get rows back in the original local order. Every process draws
    the same permutation (rank 0's is broadcast), so BatchNorm in the key encoder sees a
    different subset of images than the query encoder and cannot leak batch statistics.
    In a single process the local batch is permuted instead (a no-op for BatchNorm, kept so
    that code paths match).

    Args:
        x: this process's batch (N, ...).
        generator: generator of the permutation (drawn on every process, rank 0's is used).

    Returns:
        ``(x_shuffled, unshuffle_index)``.
    """
    n_local = x.shape[0]
    everything = gather(x)
    perm = torch.randperm(everything.shape[0], generator=generator)
    if world_size() > 1:
        perm = _broadcast_tensor(perm)
    perm = perm.to(x.device)
    unshuffle = torch.argsort(perm)
    start = rank() * n_local
    return everything[perm[start : start + n_local]], unshuffle


@torch.no_grad()
def batch_unshuffle(x: torch.Tensor, unshuffle_index: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`batch_shuffle`: this process's rows, back in their original order."""
    n_local = x.shape[0]
    everything = gather(x)
    start = rank() * n_local
    return everything[unshuffle_index[start : start + n_local]]


def _broadcast_tensor(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    device = _comm_device()
    buf = t.to(device).contiguous()
    dist.broadcast(buf, src=src)
    return buf.to(t.device)


# ---------------------------------------------------------------------------- SyncBatchNorm
class SyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of all processes, for devices where torch's fused
    :class:`torch.nn.SyncBatchNorm` does not run (the CPU with gloo).

    Each process computes its per-channel count, mean and centred sum of squares, all-gathers
    them with gradients (one collective per layer) and combines them with the parallel
    variance formula, so the statistics equal those of BatchNorm over the global batch and the
    backward pass is exact. Same parameters and buffers as ``nn.BatchNorm*d`` (checkpoints load
    into either). Outside training, or in a single process, it is plain BatchNorm.
    :func:`convert_sync_batchnorm` picks torch's implementation on GPUs.

    Args:
        num_features: channels C of the (N, C, ...) input.
        eps: added to the variance.
        momentum: running-statistics update factor; None for a cumulative average.
        affine: learn a per-channel scale and shift.
        track_running_stats: keep running mean and variance for eval mode.
        process_group: the group to synchronise over; None for the world.
        device: where to create the parameters and buffers.
        dtype: their dtype.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__(
            num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype
        )
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Normalise ``input`` with the statistics of the global batch (training, > 1 process)."""
        group = self.process_group
        if not self.training or not is_distributed() or world_size(group) == 1:
            return super().forward(input)
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked)
        x = input.float()
        c = x.shape[1]
        dims = [0] + list(range(2, x.ndim))
        shape = (1, c, *[1] * (x.ndim - 2))
        count = x.numel() // c
        mean = x.mean(dims)
        m2 = ((x - mean.view(shape)) ** 2).sum(dims)
        local = torch.cat([mean, m2, mean.new_full((1,), float(count))]).unsqueeze(0)
        stats = gather_with_grad(local, group)  # (world size, 2C + 1)
        means, m2s, counts = stats[:, :c], stats[:, c : 2 * c], stats[:, 2 * c :].detach()
        total = counts.sum()
        g_mean = (counts * means).sum(0) / total
        g_m2 = (m2s + counts * (means - g_mean) ** 2).sum(0)
        y = (x - g_mean.view(shape)) * torch.rsqrt(g_m2.view(shape) / total + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                unbiased = g_m2 / (total - 1).clamp(min=1)
                self.running_mean.mul_(1 - factor).add_(
                    g_mean.to(self.running_mean.dtype), alpha=factor
                )
                self.running_var.mul_(1 - factor).add_(
                    unbiased.to(self.running_var.dtype), alpha=factor
                )
        return y.to(input.dtype)


def _replace_batchnorms(
    module: nn.Module, replacement: Callable[[nn.Module], nn.Module]
) -> nn.Module:
    """Walk ``module`` once, swapping each layer for ``replacement(layer)`` (the layer itself
    to keep it). A layer reachable by two paths (an aliased submodule) is replaced once.
    """
    memo: dict[int, nn.Module] = {}

    def walk(m: nn.Module) -> nn.Module:
        if id(m) in memo:
            return memo[id(m)]
        out = replacement(m)
        memo[id(m)] = out
        for name, child in list(m.named_children()):
            new = walk(child)
            if new is not child:
                out.add_module(name, new)
        return out

    return walk(module)


def _same_tensors(new: nn.Module, old: nn.Module) -> nn.Module:
    """``new`` (a BatchNorm-like layer) takes ``old``'s parameter and buffer objects and mode."""
    if old.affine:
        new.weight, new.bias = old.weight, old.bias
    new.running_mean, new.running_var = old.running_mean, old.running_var
    new.num_batches_tracked = old.num_batches_tracked
    new.train(old.training)
    return new


def convert_sync_batchnorm(
    module: nn.Module, process_group: Any = None, device: Optional[torch.device | str] = None
) -> nn.Module:
    """Replace every BatchNorm in ``module`` by a synchronised one, sharing its tensors.

    On GPUs (``device``, default: where ``module``'s parameters live) the layers become
    :class:`torch.nn.SyncBatchNorm`; elsewhere this module's :class:`SyncBatchNorm`. The new
    layers reuse the *same* ``Parameter`` and buffer objects, so an optimizer built before or
    after the conversion trains the right tensors. A BatchNorm reachable by two paths (an
    aliased submodule) becomes one layer.

    Args:
        module: the network to convert in place.
        process_group: the group to synchronise over; None for the world.
        device: the training device; default: that of ``module``'s first parameter.

    Returns:
        The converted module (a new object only when ``module`` itself is a BatchNorm).
    """
    if device is None:
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
    native = torch.device(device).type in _NATIVE_SYNC_BN_DEVICES
    cls = nn.SyncBatchNorm if native else SyncBatchNorm

    def convert(m: nn.Module) -> nn.Module:
        if not isinstance(m, nn.modules.batchnorm._BatchNorm) or isinstance(m, cls):
            return m
        out = _same_tensors(
            cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats, process_group),
            m,
        )
        out._converted_from = getattr(m, "_converted_from", type(m))
        return out

    return _replace_batchnorms(module, convert)


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`convert_sync_batchnorm`: each layer it made becomes its original BatchNorm
    class again, with the same parameter and buffer objects. Layers it did not make are kept.

    Args:
        module: the converted network.

    Returns:
        The reverted module (a new object only when ``module`` itself was converted).
    """

    def revert(m: nn.Module) -> nn.Module:
        original = getattr(m, "_converted_from", None)
        if original is None:
            return m
        return _same_tensors(
            original(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats), m
        )

    return _replace_batchnorms(module, revert)


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy every buffer of ``module`` from process ``src`` (queues, banks, BN statistics)."""
    if world_size() == 1:
        return
    for buf in module.buffers():
        tmp = buf.detach().contiguous()
        dist.broadcast(tmp, src=src)
        if tmp.data_ptr() != buf.data_ptr():
            buf.detach().copy_(tmp)


def ddp_wrap(
    module: nn.Module, find_unused_parameters: bool = True
) -> nn.parallel.DistributedDataParallel:
    """Wrap ``module`` in DDP: parameters *and buffers* synced from rank 0 once, at creation;
    buffers are not re-broadcast at every forward (queues would cost a copy per step).

    Args:
        module: the model, already on its device.
        find_unused_parameters: let DDP skip parameters a step does not use.

    Returns:
        The ``DistributedDataParallel`` wrapper.
    """
    import inspect

    kwargs: dict[str, Any] = dict(find_unused_parameters=find_unused_parameters)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    if device.type == "cuda":
        kwargs["device_ids"] = [device.index]
    if (
        "forward_sync_buffers"
        in inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    ):
        kwargs["forward_sync_buffers"] = False  # still synced once at init
        return nn.parallel.DistributedDataParallel(module, **kwargs)
    broadcast_buffers(module)
    return nn.parallel.DistributedDataParallel(module, broadcast_buffers=False, **kwargs)


# ---------------------------------------------------------------------------- process group
def init_from_env(
    device: Optional[torch.device | str] = None,
    backend: Optional[str] = None,
    timeout: Optional[datetime.timedelta] = None,
) -> bool:
    """Join the process group described by torchrun's environment variables.

    Does nothing when a group already exists (a user may create their own). The backend is
    NCCL for CUDA devices and gloo otherwise. The group is *not* destroyed by the library:
    call :func:`cleanup` (or ``torch.distributed.destroy_process_group()``) at the end of
    your script.

    Args:
        device: the training device; default: :func:`local_device`.
        backend: the backend; default: NCCL for CUDA, gloo otherwise.
        timeout: collective timeout; default: torch's.

    Returns:
        True when this call created the group, False when one existed.

    Raises:
        ConfigError: the launcher's variables (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
            ``MASTER_PORT``) are not all set.
    """
    if is_distributed():
        return False
    missing = [
        k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
    ]
    if missing:
        raise ConfigError(
            f"distributed=True needs the launcher's environment "
            f"({', '.join(missing)} not set): launch with "
            "`torchrun --nproc_per_node=N script.py`, or "
            "create the process group yourself before calling supervise()."
        )
    device = torch.device(device) if device is not None else local_device()
    if backend is None:
        backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {"backend": backend}
    if timeout is not None:
        kwargs["timeout"] = timeout
    dist.init_process_group(**kwargs)
    return True


def local_device() -> torch.device:
    """This process's GPU under torchrun (``LOCAL_RANK``), else the CPU; sets the CUDA device."""
    if torch.cuda.is_available():
        index = local_rank() % max(1, torch.cuda.device_count())
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def cleanup() -> None:
    """Destroy the process group if there is one (call once, at the end of a script)."""
    if is_distributed():
        dist.destroy_process_group()


__all__ = [
    "is_distributed",
    "rank",
    "world_size",
    "local_rank",
    "is_main_process",
    "launched_distributed",
    "barrier",
    "gather_with_grad",
    "gather",
    "all_reduce_with_grad",
    "all_reduce_sum",
    "any_process",
    "all_processes",
    "broadcast_int",
    "batch_shuffle",
    "batch_unshuffle",
    "SyncBatchNorm",
    "convert_sync_batchnorm",
    "revert_sync_batchnorm",
    "broadcast_buffers",
    "ddp_wrap",
    "init_from_env",
    "local_device",
    "cleanup",
]
