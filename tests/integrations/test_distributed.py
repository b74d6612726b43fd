"""Distributed training (issue 7) on the CPU with gloo: 2 processes launched by ``torchrun``.

One launch (module fixture ``two_procs``) runs every 2-process scenario of this file: each
rank runs :func:`_worker` (this file executed as a script) and saves its observations to
``rank<r>.pt``; the tests below compare them with each other and with single-process
references computed here. Scenarios:

* ``equiv``  SimCLR, 2 processes x batch 8 vs 1 process x batch 16 on the same 32 images:
  same loss, gradients and parameters. To make this exact the views are deterministic (an
  ``augment`` callable returning the image and its mirror), ``shuffle=False`` (rank r then
  gets images r, r+2, ... so the two global batches hold the same images) and BatchNorm is
  synchronised (the default in distributed runs): BatchNorm over the local batch alone would
  differ from BatchNorm over the global batch.
* ``train``  SimCLR with real augmentations, 32 shuffled images, 2 epochs, checkpoints: data split
  (disjoint shares, new order each epoch), identical parameters on both ranks, only rank 0
  writes the checkpoint and the history, the epoch loss is the mean over both ranks.
* ``moco``   MoCo v2: the queue is identical on both ranks after every step.
* ``queue``  ``memory.Queue`` pushed with different keys per rank: identical, in rank order.
* ``grad``   ``gather_with_grad`` / ``all_reduce_with_grad`` backward, ``SyncBatchNorm``
  against BatchNorm over the concatenated batch, ``batch_shuffle``/``batch_unshuffle``.
* ``nan`` / ``stop``  a non-finite loss or a SIGTERM on rank 1 only: both ranks skip / stop
  after the same step (otherwise DDP would hang).
"""

from __future__ import annotations

import functools
import os
import runpy
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import super_selfish
from super_selfish import Callback, SimCLRSupervisor, data, store
from super_selfish import distributed as dist_utils
from super_selfish.memory import Queue

REPO = Path(super_selfish.__file__).resolve().parent.parent
SMALL = dict(hidden_dim=64, projection_dim=32)  # a small projector keeps CPU steps fast
WORKER_TIMEOUT_S = 240


@functools.lru_cache(maxsize=1)
def _sample() -> data.TensorImageDataset:
    return data.materialize(data.dataset("cifar10-sample"))


def sample_subset(n: int, seed: int = 0) -> data.TensorImageDataset:
    ds = _sample()
    return ds.subset(torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n])


def fixed_views(images: torch.Tensor, generator: Any = None) -> list[torch.Tensor]:
    """Deterministic 'augmentation': the image and its mirror image."""
    x = images.float() / 255
    return [x, x.flip(-1)]


class Recorder(Callback):
    """Per-step loss, the first ``grad_steps`` steps' gradients, and the step count."""

    def __init__(self, grad_steps: int = 0):
        self.norm_type = ""
        self.losses: list[float] = []
        self.grads: list[dict[str, torch.Tensor]] = []
        self.grad_steps = grad_steps

    def on_train_start(self, sup):
        self.norm_type = type(sup.backbone.body[0][1]).__name__  # during training

    def on_step_end(self, sup, step, metrics):
        self.losses.append(metrics["loss"])
        if len(self.grads) < self.grad_steps:  # p.grad still holds this step's (averaged) grads
            self.grads.append(
                {
                    n: p.grad.detach().clone()
                    for n, p in sup.named_parameters()
                    if p.grad is not None
                }
            )


def params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Cosine similarity of two gradients, all parameters flattened into one vector."""
    x = torch.cat([a[k].double().flatten() for k in sorted(a)])
    y = torch.cat([b[k].double().flatten() for k in sorted(a)])
    return float(F.cosine_similarity(x, y, dim=0))


def all_close(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], rtol: float = 1e-4, atol: float = 1e-5
) -> bool:
    assert a.keys() == b.keys()
    return all(torch.allclose(a[k].double(), b[k].double(), rtol=rtol, atol=atol) for k in a)


def max_rel_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    worst = 0.0
    for k in a:
        x, y = a[k].double(), b[k].double()
        worst = max(worst, float((x - y).abs().max() / (x.abs().max() + 1e-8)))
    return worst


def run_equivalence(batch_size: int, name: str, **options: Any) -> dict[str, Any]:
    """SimCLR, 2 SGD steps on 32 images with deterministic views, in data order."""
    torch.manual_seed(0)
    sup = SimCLRSupervisor(sample_subset(32), seed=0, augment=fixed_views, **SMALL)
    rec = Recorder(grad_steps=1)
    sup.supervise(
        lr=0.1,
        optimizer=torch.optim.SGD,
        epochs=1,
        batch_size=batch_size,
        shuffle=False,
        name=name,
        progress=False,
        callbacks=[rec],
        save=False,
        **options,
    )
    return {
        "losses": rec.losses,
        "grads": rec.grads[0],
        "state": params(sup),
        "bn_type": rec.norm_type,
        "bn_type_after": type(sup.backbone.body[0][1]).__name__,
        "ddp_after": sup._ddp is not None,
        "sup": sup,
    }


# ------------------------------------------------------------------------------ worker side
def _scenario_equiv(out: Path) -> dict[str, Any]:
    result = run_equivalence(8, str(out / "equiv"))
    del result["sup"]
    return result


class IndexRecordingSimCLR(SimCLRSupervisor):
    """SimCLR that remembers the dataset indices of every batch it trains on."""

    def _forward(self, batch):
        self.seen.append((self.epoch, batch.index.clone()))
        return super()._forward(batch)


def _scenario_train(out: Path) -> dict[str, Any]:
    writes: list[str] = []
    real_write = store.write

    def counting_write(payload, name):
        writes.append(str(name))
        return real_write(payload, name)

    store.write = counting_write
    try:
        sup = IndexRecordingSimCLR(sample_subset(32), seed=0, **SMALL)
        sup.seen = []
        rec = Recorder()
        history = sup.supervise(
            lr=1e-3,
            epochs=2,
            batch_size=8,
            name=str(out / "train"),
            progress=False,
            callbacks=[rec],
        )
    finally:
        store.write = real_write
    return {
        "writes": writes,
        "seen": sup.seen,
        "losses": rec.losses,
        "history": history,
        "state": params(sup),
        "global_step": sup.global_step,
        "sampler": type(sup.loader.sampler).__name__,
    }


def _scenario_moco(out: Path) -> dict[str, Any]:
    from super_selfish.methods import MomentumContrastSupervisor

    class QueueRecorder(Callback):
        def __init__(self):
            self.queues: list[torch.Tensor] = []

        def on_step_end(self, sup, step, metrics):
            self.queues.append(
                torch.cat(
                    [sup.queue.items.clone(), sup.queue.pointer.view(1, 1).float().expand(1, 32)]
                )
            )

    sup = MomentumContrastSupervisor(
        sample_subset(48), seed=0, hidden_dim=64, projection_dim=32, queue_size=32
    )
    rec = QueueRecorder()
    sup.supervise(
        lr=1e-3,
        epochs=1,
        batch_size=8,
        name=str(out / "moco"),
        progress=False,
        callbacks=[rec],
        save=False,
    )
    return {"queues": rec.queues, "state": params(sup)}


def queue_keys(rank: int, step: int) -> torch.Tensor:
    """Different keys on each rank and step (2 keys of dimension 4)."""
    g = torch.Generator().manual_seed(100 * rank + step)
    return F.normalize(torch.randn(2, 4, generator=g), dim=1)


def _scenario_queue(out: Path) -> dict[str, Any]:
    torch.manual_seed(0)  # same random initial rows everywhere
    queue = Queue(6, 4)
    states = []
    for step in range(4):  # 4 pushes of 2 x 2 keys into 6 rows: wraps around
        queue.push(queue_keys(dist_utils.rank(), step))
        states.append((queue.items.clone(), int(queue.pointer), int(queue.filled)))
    return {"states": states}


def grad_inputs(rank: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7 + rank)
    return {
        "x": torch.randn(3, 5, generator=g),
        "v": torch.randn(5, generator=g),
        "bn_in": torch.randn(4, 3, 2, 2, generator=g) * 2 + 1,
        "bn_w": torch.randn(4, 3, 2, 2, generator=g),
    }


def gather_loss(all_x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return ((all_x @ v).tanh() ** 2).sum() + all_x.pow(3).mean()


def _scenario_grad(out: Path) -> dict[str, Any]:
    r = dist_utils.rank()
    inp = grad_inputs(r)
    x = inp["x"].clone().requires_grad_(True)
    gather_loss(dist_utils.gather_with_grad(x), inp["v"]).backward()
    y = x.detach().clone().requires_grad_(True)
    (dist_utils.all_reduce_with_grad(y) * inp["v"] * (r + 1)).sum().backward()

    torch.manual_seed(0)
    bn = dist_utils.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))[0]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    bx = inp["bn_in"].clone().requires_grad_(True)
    bn_out = bn(bx)
    (bn_out * inp["bn_w"]).sum().backward()

    local = torch.arange(4.0).view(4, 1) + 10 * r
    shuffled, unshuffle = dist_utils.batch_shuffle(local, torch.Generator().manual_seed(r))
    restored = dist_utils.batch_unshuffle(shuffled * 2, unshuffle)
    return {
        "x_grad": x.grad,
        "y_grad": y.grad,
        "bn_type": type(bn).__name__,
        "bn_out": bn_out.detach(),
        "bn_x_grad": bx.grad,
        "bn_w_grad": bn.weight.grad,
        "bn_b_grad": bn.bias.grad,
        "bn_running": (bn.running_mean, bn.running_var),
        "shuffled": shuffled,
        "unshuffle": unshuffle,
        "restored": restored,
    }


class NaNOnRank1(SimCLRSupervisor):
    """The second step's loss is NaN on rank 1 only."""

    def _forward(self, batch):
        loss = super()._forward(batch)
        self.calls = getattr(self, "calls", 0) + 1
        if dist_utils.rank() == 1 and self.calls == 2:
            loss = loss * float("nan")
        return loss


def _scenario_nan(out: Path) -> dict[str, Any]:
    sup = NaNOnRank1(sample_subset(32), seed=0, **SMALL)
    rec = Recorder()
    sup.supervise(
        lr=1e-3,
        epochs=1,
        batch_size=4,
        name=str(out / "nan"),
        progress=False,
        callbacks=[rec],
        skip_nonfinite=True,
        save=False,
    )
    return {"global_step": sup.global_step, "state": params(sup), "n_steps": len(rec.losses)}


class TermOnRank1(Callback):
    def on_step_end(self, sup, step, metrics):
        if dist_utils.rank() == 1 and step == 2:
            os.kill(os.getpid(), signal.SIGTERM)


def _scenario_stop(out: Path) -> dict[str, Any]:
    sup = SimCLRSupervisor(sample_subset(32), seed=0, **SMALL)
    sup.supervise(
        lr=1e-3,
        epochs=1,
        batch_size=4,
        name=str(out / "stop"),
        progress=False,
        callbacks=[TermOnRank1()],
    )
    return {"global_step": sup.global_step, "interrupted": sup.interrupted, "state": params(sup)}


SCENARIOS = {
    "equiv": _scenario_equiv,
    "train": _scenario_train,
    "moco": _scenario_moco,
    "queue": _scenario_queue,
    "grad": _scenario_grad,
    "nan": _scenario_nan,
    "stop": _scenario_stop,
}


def _worker(out: Path) -> None:
    import datetime

    torch.set_num_threads(1)
    # The group is joined from torchrun's environment; supervise() then finds it (and would
    # have joined it itself, through the same function, had we not).
    assert dist_utils.init_from_env(timeout=datetime.timedelta(seconds=60))
    results: dict[str, Any] = {
        "world_size": dist_utils.world_size(),
        "backend": torch.distributed.get_backend(),
    }
    for name, scenario in SCENARIOS.items():
        try:
            results[name] = scenario(out)
        except Exception:  # noqa: BLE001 - reported by the test that reads this scenario
            results[name] = {"error": traceback.format_exc()}
        dist_utils.barrier()
    torch.save(results, out / f"rank{dist_utils.rank()}.pt")
    dist_utils.cleanup()


# ------------------------------------------------------------------------------ test side
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_proc(tmp_path_factory) -> dict[str, Any]:
    """The single-process reference: batch 16 (= 2 processes x 8), fp32."""
    return run_equivalence(16, str(tmp_path_factory.mktemp("one") / "run"))


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory) -> dict[str, Any]:
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    out = tmp_path_factory.mktemp("ddp")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(Path(__file__).resolve()),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    return {"out": out, "ranks": ranks, "stderr": proc.stderr}


def scenario(two_procs: dict[str, Any], name: str) -> list[dict[str, Any]]:
    per_rank = [r[name] for r in two_procs["ranks"]]
    for r, res in enumerate(per_rank):
        assert "error" not in res, f"rank {r}, scenario {name}:\n{res['error']}"
    return per_rank


def test_launch_joins_gloo_group_of_two(two_procs):
    assert [r["world_size"] for r in two_procs["ranks"]] == [2, 2]
    assert two_procs["ranks"][0]["backend"] == "gloo"


def test_two_processes_match_one_process_with_double_batch(two_procs, one_proc):
    r0, r1 = scenario(two_procs, "equiv")
    one = one_proc
    assert r0["bn_type"] == "SyncBatchNorm" and one["bn_type"] == "BatchNorm2d"
    # After supervise() the model is a plain one again (evaluable on one process).
    assert r0["bn_type_after"] == "BatchNorm2d" and not r0["ddp_after"]
    # Loss: the mean of the two ranks' losses is the one-process loss of the global batch.
    for step in range(2):
        mean = (r0["losses"][step] + r1["losses"][step]) / 2
        assert abs(mean - one["losses"][step]) < 1e-4, (step, mean, one["losses"][step])
    assert abs(r0["losses"][0] - r1["losses"][0]) > 1e-3  # the ranks did see different images
    # Gradients after DDP's averaging equal the one-process gradients (a backward of
    # gather_with_grad that did not sum over processes would be off by a factor of ~2).
    assert max_rel_diff(r0["grads"], one["grads"]) < 1e-4
    assert all(torch.equal(r0["grads"][k], r1["grads"][k]) for k in r0["grads"])
    # Parameters and BatchNorm statistics after two SGD steps (absolute tolerance for the
    # BatchNorm biases, which start at 0 and whose gradients are sums with cancellation).
    assert all_close(r0["state"], one["state"])
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])


def test_data_is_split_across_ranks_and_reshuffled_each_epoch(two_procs):
    r0, r1 = scenario(two_procs, "train")
    assert r0["sampler"] == "DistributedSampler"
    for epoch in range(2):
        a = torch.cat([i for e, i in r0["seen"] if e == epoch])
        b = torch.cat([i for e, i in r1["seen"] if e == epoch])
        assert len(a) == len(b) == 16  # 32 images / 2 processes, 2 batches of 8 each
        assert set(a.tolist()).isdisjoint(b.tolist())
        assert set(a.tolist()) | set(b.tolist()) == set(range(32))
    first = torch.cat([i for e, i in r0["seen"] if e == 0])
    second = torch.cat([i for e, i in r0["seen"] if e == 1])
    assert not torch.equal(first, second)  # set_epoch: a new order every epoch


def test_parameters_identical_across_ranks_and_only_rank0_writes(two_procs):
    r0, r1 = scenario(two_procs, "train")
    assert r0["global_step"] == r1["global_step"] == 4
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    name = str(two_procs["out"] / "train")
    assert r0["writes"] == [name, name] and r1["writes"] == []
    assert store.checkpoint_path(name).exists()
    assert (store.run_dir(name) / "history.json").exists()
    # The epoch loss is the mean over both ranks' steps, on both ranks.
    for epoch in range(2):
        steps = slice(2 * epoch, 2 * epoch + 2)
        expected = (sum(r0["losses"][steps]) + sum(r1["losses"][steps])) / 4
        assert abs(r0["history"][epoch]["loss"] - expected) < 1e-6
        assert r1["history"][epoch]["loss"] == r0["history"][epoch]["loss"]
    saved = store.read(name)
    assert saved["epoch"] == 2 and saved["global_step"] == 4
    assert all(torch.equal(saved["state"][k], r0["state"][k]) for k in saved["state"])


def test_one_process_resumes_a_two_process_checkpoint(two_procs):
    name = str(two_procs["out"] / "train")
    saved = store.read(name)
    sup = SimCLRSupervisor(sample_subset(32), seed=0, **SMALL)
    # The same global batch (2 x 8) on one process.
    history = sup.supervise(
        lr=1e-3, epochs=3, batch_size=16, name=name, pretrained=True, progress=False
    )
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert sup.global_step == 4 + 2
    assert torch.isfinite(torch.tensor(history[-1]["loss"]))
    assert sup._ddp is None and type(sup.backbone.body[0][1]) is nn.BatchNorm2d
    moved = [
        k
        for k, v in params(sup).items()
        if v.is_floating_point() and not torch.equal(v, saved["state"][k])
    ]
    assert moved  # training continued from the checkpoint's weights


def test_moco_queue_identical_on_all_ranks(two_procs):
    r0, r1 = scenario(two_procs, "moco")
    assert len(r0["queues"]) == 3  # 48 images / 2 ranks / batch 8
    pointers = []
    for q0, q1 in zip(r0["queues"], r1["queues"]):
        assert torch.equal(q0, q1)
        pointers.append(int(q0[-1, 0]))
    assert pointers == [16, 0, 16]  # 16 keys (2 ranks x 8) per step into 32 rows
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])


def test_queue_push_gathers_keys_in_rank_order(two_procs):
    r0, r1 = scenario(two_procs, "queue")
    torch.manual_seed(0)
    reference = Queue(6, 4)  # one process pushing the concatenated keys
    for step, ((items0, p0, f0), (items1, p1, f1)) in enumerate(zip(r0["states"], r1["states"])):
        reference.push(torch.cat([queue_keys(0, step), queue_keys(1, step)]))
        assert torch.equal(items0, items1) and (p0, f0) == (p1, f1)
        assert torch.equal(items0, reference.items)
        assert (p0, f0) == (int(reference.pointer), int(reference.filled))


def test_gather_with_grad_backward_matches_single_process(two_procs):
    r0, r1 = scenario(two_procs, "grad")
    i0, i1 = grad_inputs(0), grad_inputs(1)
    # Reference: the sum of both ranks' losses, as a function of both inputs.
    x0, x1 = i0["x"].clone().requires_grad_(True), i1["x"].clone().requires_grad_(True)
    everything = torch.cat([x0, x1])
    (gather_loss(everything, i0["v"]) + gather_loss(everything, i1["v"])).backward()
    assert torch.allclose(r0["x_grad"], x0.grad, atol=1e-5)
    assert torch.allclose(r1["x_grad"], x1.grad, atol=1e-5)
    # all_reduce_with_grad: d/dy_r of sum_j (j + 1) v_j . (y_0 + y_1) is v_0 + 2 v_1 on every
    # rank (a backward without the all-reduce would give (r + 1) v_r).
    expected = (i0["v"] + 2 * i1["v"]).expand(3, 5)
    assert torch.allclose(r0["y_grad"], expected) and torch.allclose(r1["y_grad"], expected)


def test_sync_batchnorm_equals_batchnorm_over_global_batch(two_procs):
    r0, r1 = scenario(two_procs, "grad")
    assert r0["bn_type"] == "SyncBatchNorm"  # ours: torch's only runs on accelerators
    i0, i1 = grad_inputs(0), grad_inputs(1)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    x = torch.cat([i0["bn_in"], i1["bn_in"]]).requires_grad_(True)
    out = bn(x)
    (out * torch.cat([i0["bn_w"], i1["bn_w"]])).sum().backward()
    assert torch.allclose(torch.cat([r0["bn_out"], r1["bn_out"]]), out.detach(), atol=1e-5)
    assert torch.allclose(torch.cat([r0["bn_x_grad"], r1["bn_x_grad"]]), x.grad, atol=1e-5)
    # Affine parameters get the local part only; DDP's all-reduce sums the parts.
    assert torch.allclose(r0["bn_w_grad"] + r1["bn_w_grad"], bn.weight.grad, atol=1e-5)
    assert torch.allclose(r0["bn_b_grad"] + r1["bn_b_grad"], bn.bias.grad, atol=1e-5)
    for mine, ref in zip(r0["bn_running"], (bn.running_mean, bn.running_var)):
        assert torch.allclose(mine, ref, atol=1e-6)


def test_batch_shuffle_is_one_global_permutation_and_unshuffle_inverts_it(two_procs):
    r0, r1 = scenario(two_procs, "grad")
    assert torch.equal(r0["unshuffle"], r1["unshuffle"])  # rank 0's permutation everywhere
    everything = torch.cat([r0["shuffled"], r1["shuffled"]]).flatten()
    assert sorted(everything.tolist()) == [0, 1, 2, 3, 10, 11, 12, 13]
    assert not torch.equal(r0["shuffled"].flatten(), torch.arange(4.0))
    assert torch.equal(r0["restored"], 2 * (torch.arange(4.0).view(4, 1)))
    assert torch.equal(r1["restored"], 2 * (torch.arange(4.0).view(4, 1) + 10))


def test_nonfinite_loss_on_one_rank_is_skipped_on_all(two_procs):
    r0, r1 = scenario(two_procs, "nan")
    assert r0["global_step"] == r1["global_step"] == 3  # 4 steps, one skipped everywhere
    assert r0["n_steps"] == r1["n_steps"] == 3
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])


def test_signal_on_one_rank_stops_all_after_the_same_step(two_procs):
    r0, r1 = scenario(two_procs, "stop")
    assert r0["interrupted"] and r1["interrupted"]
    assert r0["global_step"] == r1["global_step"] == 2
    saved = store.read(str(two_procs["out"] / "stop"))
    assert saved["step_in_epoch"] == 2 and saved["global_step"] == 2


# ------------------------------------------------------------------------------ one process
def test_convert_sync_batchnorm_keeps_parameter_objects():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm1d(4)))
    alias = nn.ModuleDict({"a": net, "b": net[1]})  # one BN reachable by two paths
    before = {id(p) for p in alias.parameters()}
    bufs = {id(b) for b in alias.buffers()}
    optimizer = torch.optim.SGD(alias.parameters(), lr=0.1)
    dist_utils.convert_sync_batchnorm(alias)
    assert isinstance(net[1], dist_utils.SyncBatchNorm) and alias["b"] is net[1]
    assert isinstance(net[2][0], dist_utils.SyncBatchNorm)
    assert (
        {id(p) for p in alias.parameters()}
        == before
        == {id(p) for g in optimizer.param_groups for p in g["params"]}
    )
    assert {id(b) for b in alias.buffers()} == bufs
    top = dist_utils.convert_sync_batchnorm(nn.BatchNorm2d(2))  # top level: a new module
    assert isinstance(top, dist_utils.SyncBatchNorm)
    x = torch.randn(8, 4, 5, 5)
    ref = nn.BatchNorm2d(4)
    with torch.no_grad():
        net[1].weight.copy_(torch.rand(4))
        ref.weight.copy_(net[1].weight)
    assert torch.allclose(net[1](x), ref(x), atol=1e-6)  # one process: plain BatchNorm
    dist_utils.revert_sync_batchnorm(alias)  # back to the original classes, same tensors
    assert type(net[1]) is nn.BatchNorm2d and type(net[2][0]) is nn.BatchNorm1d
    assert alias["b"] is net[1] and {id(p) for p in alias.parameters()} == before
    assert {id(b) for b in alias.buffers()} == bufs


def test_helpers_are_noops_in_one_process():
    x = torch.randn(3, 2, requires_grad=True)
    assert dist_utils.gather_with_grad(x) is x and dist_utils.gather(x) is x
    assert dist_utils.world_size() == 1 and dist_utils.rank() == 0
    assert dist_utils.all_reduce_sum(2.0, 3) == (2.0, 3.0)
    assert dist_utils.any_process(True) and not dist_utils.all_processes(False)
    shuffled, index = dist_utils.batch_shuffle(x.detach())
    assert torch.equal(dist_utils.batch_unshuffle(shuffled, index), x.detach())


def test_distributed_true_without_launcher_says_how_to_launch(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    sup = SimCLRSupervisor(sample_subset(16), seed=0, **SMALL)
    with pytest.raises(super_selfish.errors.ConfigError, match="torchrun --nproc_per_node"):
        sup.supervise(epochs=1, batch_size=8, distributed=True, progress=False, save=False)


def test_bf16_autocast_loss_close_to_fp32(one_proc, tmp_path):
    bf16 = run_equivalence(16, str(tmp_path / "bf16"), precision="bf16")
    assert bf16["sup"].precision == "bf16" and not bf16["sup"]._scaler.is_enabled()
    for a, b in zip(one_proc["losses"], bf16["losses"]):
        assert a != b  # bf16 really ran in lower precision ...
        assert abs(a - b) < 0.02 * abs(a)  # ... and stays close to fp32
    assert cosine(one_proc["grads"], bf16["grads"]) > 0.98


def test_augmentations_run_in_float32_under_bf16_autocast(tmp_path):
    """Views are made outside autocast: elastic deformation (exemplar preset) only takes
    float32, and the views must not be rounded to bf16 before the backbone casts them."""
    from super_selfish.methods import ExemplarSupervisor

    sup = ExemplarSupervisor(sample_subset(16).images, seed=0, loss="classification")
    seen = []
    original = sup.views
    sup.views = lambda images, generator=None: (
        seen.append(views := original(images, generator=generator)) or views
    )
    history = sup.supervise(
        epochs=1,
        batch_size=8,
        precision="bf16",
        save=False,
        name=str(tmp_path / "bf16"),
        progress=False,
    )
    assert torch.isfinite(torch.tensor(history[0]["loss"]))
    assert seen and all(v.dtype == torch.float32 for views in seen for v in views)


def test_channels_last_matches_fp32_and_fp16_uses_a_grad_scaler(one_proc, tmp_path):
    cl = run_equivalence(16, str(tmp_path / "cl"), channels_last=True)
    conv = cl["sup"].backbone.body[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert all(abs(a - b) < 1e-4 for a, b in zip(cl["losses"], one_proc["losses"]))
    # Same gradients up to float32 rounding: the CPU channels-last BatchNorm kernel sums in
    # float32 (the contiguous one in float64), which shows in the early BN-bias gradients.
    assert cosine(one_proc["grads"], cl["grads"]) > 0.9999
    fp16 = SimCLRSupervisor(sample_subset(16), seed=0, augment=fixed_views, **SMALL)
    rec = Recorder()
    fp16.supervise(
        lr=1e-3,
        epochs=1,
        batch_size=8,
        precision="fp16",
        save=False,
        name=str(tmp_path / "fp16"),
        progress=False,
        callbacks=[rec],
    )
    assert fp16._scaler.is_enabled() and fp16._scaler.get_scale() > 1
    assert fp16.global_step == 2 and all(abs(x - one_proc["losses"][0]) < 1.0 for x in rec.losses)


def test_compile_keeps_checkpoint_keys(tmp_path):
    sup = SimCLRSupervisor(sample_subset(16), seed=0, **SMALL)
    keys = set(sup.state_dict())
    sup.supervise(
        lr=1e-3,
        epochs=1,
        batch_size=8,
        compile={"backend": "eager"},
        name=str(tmp_path / "c"),
        progress=False,
    )
    assert set(sup.state_dict()) == keys  # nn.Module.compile is in place: no "_orig_mod."
    assert set(store.read(str(tmp_path / "c"))["state"]) == keys
    assert sup.global_step == 2


def test_example_script_runs_on_one_process(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "train_ddp.py",
            "--subset",
            "16",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--hidden-dim",
            "64",
            "--name",
            str(tmp_path / "example"),
            "--no-progress",
        ],
    )
    runpy.run_path(str(REPO / "examples" / "train_ddp.py"), run_name="__main__")
    saved = store.read(str(tmp_path / "example"))
    assert saved["method"] == "simclr" and saved["epoch"] == 1


if __name__ == "__main__":  # one rank of the ``two_procs`` launch
    _worker(Path(sys.argv[1]))
