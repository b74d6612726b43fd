"""Joint-embedding methods: MoCo v2/v3, BYOL, SimSiam, Barlow Twins, VICReg, NNCLR (their losses:
tests/losses)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from toys import sample_subset

from super_selfish import Callback, data, methods
from super_selfish.errors import ConfigError
from super_selfish.memory import Queue
from super_selfish.methods import (
    BarlowTwinsSupervisor,
    BYOLSupervisor,
    MomentumContrastSupervisor,
    NNCLRSupervisor,
    SimSiamSupervisor,
    VICRegSupervisor,
)
from super_selfish.methods.moco import shuffle_permutation
from super_selfish.momentum import momentum_at

# Small heads keep the CPU tests fast; the paper defaults are checked separately.
CASES = {
    "moco": (MomentumContrastSupervisor, dict(hidden_dim=64, projection_dim=32)),
    "moco_v3": (MomentumContrastSupervisor, dict(version=3, hidden_dim=64, projection_dim=32)),
    "byol": (BYOLSupervisor, dict(hidden_dim=64, projection_dim=32)),
    "simsiam": (SimSiamSupervisor, dict(hidden_dim=64, projection_dim=64, predictor_hidden_dim=16)),
    "barlow": (BarlowTwinsSupervisor, dict(hidden_dim=64, projection_dim=64)),
    "vicreg": (VICRegSupervisor, dict(hidden_dim=64, projection_dim=64)),
    "nnclr": (NNCLRSupervisor, dict(hidden_dim=64, projection_dim=32, predictor_hidden_dim=64)),
}
MOMENTUM = ("moco", "moco_v3", "byol")


def frozen_modules(sup):
    return [t for _, t in sup.momentum_pairs()] if hasattr(sup, "momentum_pairs") else []


def trainable(sup):
    return {n: p for n, p in sup.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def subset():
    return sample_subset(64)


def ready(sup, batch_size):
    """Optimizer, scheduler and generators without training (epochs=0)."""
    sup.supervise(
        epochs=0, batch_size=batch_size, progress=False, save=False, device="cpu", lr=1e-2
    )
    return sup


# ---------------------------------------------------------------------------- registry, defaults
def test_registered_names_and_paper_defaults():
    for name, cls in [
        ("moco", MomentumContrastSupervisor),
        ("byol", BYOLSupervisor),
        ("simsiam", SimSiamSupervisor),
        ("barlow", BarlowTwinsSupervisor),
        ("vicreg", VICRegSupervisor),
        ("nnclr", NNCLRSupervisor),
    ]:
        assert methods.get(name) is cls and cls.method == name
    moco = MomentumContrastSupervisor()
    assert moco.criterion.temperature == 0.2 and moco.momentum == 0.999
    assert moco.momentum_schedule == "constant" and moco.shuffle_groups == 2
    assert moco.queue.size == 65536 and moco.queue.items.shape[1] == 128
    assert moco.augment_name == "moco_v2" and moco.predictor is None
    v3 = MomentumContrastSupervisor(version=3)
    assert (v3.queue, v3.criterion.temperature, v3.momentum) == (None, 1.0, 0.99)
    assert v3.momentum_schedule == "cosine" and v3.augment_name == "byol"
    assert v3.projector.dims == (256, 4096, 256) and v3.predictor.dims == (256, 4096, 256)
    byol = BYOLSupervisor()
    assert byol.projector.dims == (256, 4096, 256) and byol.predictor.dims == (256, 4096, 256)
    assert (byol.momentum, byol.momentum_schedule) == (0.996, "cosine")
    assert byol.criterion.mode == "squared"
    assert byol.augment_name == "byol" and byol.views[0].ops != byol.views[1].ops  # asymmetric
    assert MomentumContrastSupervisor(norm="group").shuffle_groups == 1
    simsiam = SimSiamSupervisor()
    assert simsiam.projector.dims == (256, 2048, 2048, 2048)
    assert simsiam.predictor.dims == (2048, 512, 2048)
    last = simsiam.projector[-1]
    assert isinstance(last, torch.nn.BatchNorm1d) and not last.affine
    barlow = BarlowTwinsSupervisor()
    assert barlow.criterion.lambd == 5e-3 and barlow.projector.dims == (256, 2048, 2048, 2048)
    vicreg = VICRegSupervisor()
    c = vicreg.criterion
    assert (c.invariance, c.variance, c.covariance, c.gamma, c.eps) == (25, 25, 1, 1, 1e-4)
    nnclr = NNCLRSupervisor()
    assert nnclr.criterion.temperature == 0.1 and nnclr.support_set.size == 98304
    assert nnclr.predictor.dims == (256, 4096, 256)


def test_queue_size_scales_with_dataset(subset):
    sup = MomentumContrastSupervisor(subset, hidden_dim=16, projection_dim=8)
    assert sup.queue.size == 6  # min(65536, len(dataset) // 10)
    sub48 = subset.subset(torch.arange(48))
    sup = MomentumContrastSupervisor(sub48, hidden_dim=16, projection_dim=8)
    ready(sup, batch_size=32)
    assert sup.queue.size == 32 and sup.hparams["queue_size"] == 32  # at least one batch
    nn_sup = NNCLRSupervisor(sub48, hidden_dim=16, projection_dim=8, predictor_hidden_dim=16)
    assert nn_sup.support_set.size == 48


# ---------------------------------------------------------------------------- builds
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("size", [32, 96])
def test_builds_with_resnet18(case, size):
    torch.manual_seed(0)
    cls, kwargs = CASES[case]
    images = torch.randint(0, 256, (8, 3, size, size), dtype=torch.uint8)
    sup = cls(images, "resnet18", seed=0, **kwargs)
    assert sup.image_size == size and sup.backbone.feature_dim == 512
    batch = data.Batch(images, torch.full((8,), -1), torch.arange(8))
    if size == 32:
        sup._aug_gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            loss = sup(batch)
        assert torch.isfinite(loss)
        return
    ready(sup, batch_size=8)
    if getattr(sup, "queue", None) is not None:  # MoCo v2: negatives for the first step
        sup.queue.push(F.normalize(torch.randn(8, sup.queue.items.shape[1]), dim=1))
    before = {n: p.detach().clone() for n, p in trainable(sup).items()}
    loss = sup(batch)
    sup._update(loss)
    assert torch.isfinite(loss)
    assert any(not torch.equal(before[n], p) for n, p in trainable(sup).items())


# ---------------------------------------------------------------------------- one epoch
class Recorder(Callback):
    """Snapshots of online and target parameters after every step."""

    def __init__(self):
        self.steps = []

    def _snap(self, sup):
        pairs = sup.momentum_pairs() if hasattr(sup, "momentum_pairs") else []
        return [
            (
                [p.detach().clone() for p in t.parameters()],
                [p.detach().clone() for p in o.parameters()],
            )
            for o, t in pairs
        ]

    def on_train_start(self, sup):
        self.start = {n: p.detach().clone() for n, p in trainable(sup).items()}
        self.steps.append((None, self._snap(sup)))

    def on_step_end(self, sup, step, metrics):
        self.steps.append((metrics, self._snap(sup)))


@pytest.mark.parametrize("case", list(CASES))
def test_one_epoch_learns_and_momentum_follows_ema(case, subset, tmp_path):
    cls, kwargs = CASES[case]
    if case in MOMENTUM:
        kwargs = dict(kwargs, momentum=0.9)  # a visible EMA step within 4 steps
    sup = cls(subset, "convnet-small", seed=0, **kwargs)
    rec = Recorder()
    history = sup.supervise(
        epochs=1,
        batch_size=16,
        lr=1e-2,
        progress=False,
        device="cpu",
        name=str(tmp_path / "run"),
        callbacks=[rec],
    )
    assert len(history) == 1 and math.isfinite(history[0]["loss"])
    assert sup.global_step == 4
    # every trainable parameter tensor has moved
    unchanged = [n for n, p in trainable(sup).items() if torch.equal(rec.start[n], p)]
    assert not unchanged, unchanged
    # momentum encoders: no gradients, moved only by target <- m target + (1 - m) online
    for target in frozen_modules(sup):
        assert all(not p.requires_grad and p.grad is None for p in target.parameters())
    if case not in MOMENTUM:
        assert not frozen_modules(sup)
        return
    moved = False
    for t in range(1, len(rec.steps)):
        metrics, snap = rec.steps[t]
        m = metrics["momentum"]
        assert m == pytest.approx(momentum_at(0.9, sup.momentum_schedule, t - 1, 4))
        for (tgt_before, _), (tgt_after, online_after) in zip(rec.steps[t - 1][1], snap):
            for b, a, o in zip(tgt_before, tgt_after, online_after):
                torch.testing.assert_close(a, m * b + (1 - m) * o, rtol=0, atol=1e-6)
                moved |= not torch.equal(a, b)
    assert moved
    if sup.momentum_schedule == "cosine":
        assert rec.steps[-1][0]["momentum"] == 1.0


def test_simsiam_logs_output_std(subset, tmp_path):
    sup = SimSiamSupervisor(subset, seed=0, **CASES["simsiam"][1])
    history = sup.supervise(
        epochs=1,
        batch_size=16,
        progress=False,
        device="cpu",
        name=str(tmp_path / "run"),
        save=False,
    )
    d, n = 64, 16
    bound = math.sqrt(n / (n - 1)) / math.sqrt(d)  # sum_j Var_j <= 1 for unit vectors
    assert 0.2 * bound < history[0]["output_std"] <= bound + 1e-6


# ---------------------------------------------------------------------------- queue
def test_queue_fifo_order_and_wraparound():
    q = Queue(6, 2, normalize=False)
    first, second = torch.arange(8.0).view(4, 2), 10 + torch.arange(8.0).view(4, 2)
    q.push(first)
    assert int(q.filled) == 4 and int(q.pointer) == 4
    torch.testing.assert_close(q.valid(), first)
    q.push(second)  # rows 4, 5 then wraps over the two oldest rows 0, 1
    assert int(q.filled) == 6 and int(q.pointer) == 2
    torch.testing.assert_close(q.items, torch.cat([second[2:], first[2:], second[:2]]))


def test_moco_step_enqueues_keys_after_the_loss(subset):
    sup = ready(MomentumContrastSupervisor(subset, seed=0, queue_size=64, **CASES["moco"][1]), 16)
    assert sup.queue.size == 64 and int(sup.queue.filled) == 0
    batch = next(iter(sup.loader))
    loss = sup(batch)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # an empty queue: no negatives yet
    keys = sup._pending_keys.clone()
    sup._update(loss)
    torch.testing.assert_close(sup.queue.items[:16], keys)
    assert int(sup.queue.pointer) == 16 and int(sup.queue.filled) == 16
    batch = next(iter(sup.loader))
    loss = sup(batch)
    assert loss.item() > 0
    keys2 = sup._pending_keys.clone()
    sup._update(loss)
    torch.testing.assert_close(sup.queue.valid(), torch.cat([keys, keys2]))


@pytest.mark.parametrize("case", ["moco", "nnclr"])
def test_queue_and_momentum_state_restored_exactly(case, subset, tmp_path):
    cls, kwargs = CASES[case]
    name = str(tmp_path / "run")
    sup = cls(subset.subset(torch.arange(48)), seed=0, **kwargs)
    sup.supervise(epochs=1, batch_size=16, progress=False, device="cpu", name=name)
    queue = sup.queue if case == "moco" else sup.support_set
    size = 16 if case == "moco" else 48  # MoCo: a tenth of the data, at least one batch
    assert int(queue.filled) == size and queue.size == size
    # a fresh supervisor without a dataset starts with the default-sized queue and adopts
    # the saved size on load
    fresh = cls(seed=1, **kwargs).load(name)
    saved, loaded = sup.state_dict(), fresh.state_dict()
    assert saved.keys() == loaded.keys()
    for key in saved:
        assert torch.equal(saved[key], loaded[key]), key
    assert any(k.startswith(("queue.", "support_set.")) for k in saved)
    if case == "moco":
        assert any(k.startswith("momentum_backbone.") for k in saved)
    # resuming continues from the restored queue
    again = cls(subset.subset(torch.arange(48)), seed=0, **kwargs)
    again.supervise(epochs=2, batch_size=16, progress=False, device="cpu", name=name, resume=True)
    assert (
        again.global_step == 6
        and int((again.queue if case == "moco" else again.support_set).filled) == size
    )


def test_explicit_queue_size_must_fit_the_batch(subset, tmp_path):
    sup = MomentumContrastSupervisor(subset, queue_size=40, **CASES["moco"][1])
    with pytest.raises(ConfigError, match="queue_size"):
        sup.supervise(epochs=1, batch_size=16, progress=False, device="cpu", save=False)
    sup = MomentumContrastSupervisor(subset, queue_size=32, **CASES["moco"][1])
    ready(sup, 16)
    assert sup.queue.size == 32
    sup = NNCLRSupervisor(subset, support_set_size=8, **CASES["nnclr"][1])
    with pytest.raises(ConfigError, match="support_set_size"):
        sup.supervise(epochs=1, batch_size=16, progress=False, device="cpu", save=False)


# ---------------------------------------------------------------------------- shuffle-BN
@pytest.mark.parametrize("n,groups", [(16, 2), (32, 4), (12, 3), (8, 4), (6, 2)])
def test_shuffle_permutation_never_reproduces_a_query_group(n, groups):
    size = n // groups
    for seed in range(20):
        perm = shuffle_permutation(n, groups, torch.Generator().manual_seed(seed))
        assert sorted(perm.tolist()) == list(range(n))
        query_groups = [set(range(g * size, (g + 1) * size)) for g in range(groups)]
        for j in range(groups):
            key_group = set(perm[j * size : (j + 1) * size].tolist())
            assert key_group not in query_groups
            owners = {i // size for i in key_group}  # query groups it draws from
            assert len(owners) == min(groups, size)
            if size % groups == 0:  # evenly from every query group
                assert all(
                    sum(i // size == g for i in key_group) == size // groups for g in range(groups)
                )


def test_shuffle_bn_keys_are_unshuffled_and_use_other_statistics():
    torch.manual_seed(0)
    sup = MomentumContrastSupervisor(None, hidden_dim=32, projection_dim=16, shuffle_groups=2)
    sup.train()
    x = torch.rand(8, 3, 32, 32)

    def encode(images):
        return sup.momentum_projector(sup.momentum_backbone(images))

    with torch.no_grad():
        keys = sup._keys(x, generator=torch.Generator().manual_seed(3))
        perm = shuffle_permutation(8, 2, torch.Generator().manual_seed(3))
        expected = torch.empty_like(keys)
        expected[perm[:4]] = encode(x[perm[:4]])  # one BN group each
        expected[perm[4:]] = encode(x[perm[4:]])
        same_groups = torch.cat([encode(x[:4]), encode(x[4:])])  # the query grouping
    torch.testing.assert_close(keys, expected)
    assert not torch.allclose(keys, same_groups, atol=1e-4)  # train-mode BN: statistics differ


def test_shuffle_bn_eval_outputs_do_not_depend_on_the_group():
    torch.manual_seed(0)
    sup = MomentumContrastSupervisor(None, hidden_dim=32, projection_dim=16, shuffle_groups=2)
    sup.eval()
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        keys = sup._keys(x, generator=torch.Generator().manual_seed(0))
        other = sup._keys(x, generator=torch.Generator().manual_seed(1))
        alone = torch.cat(
            [sup.momentum_projector(sup.momentum_backbone(x[i : i + 1])) for i in range(8)]
        )
        queries = sup._query(x.flip(0)).flip(0)
        queries_alone = torch.cat([sup.projector(sup.backbone(x[i : i + 1])) for i in range(8)])
    torch.testing.assert_close(keys, alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(other, alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(queries, queries_alone, rtol=1e-4, atol=1e-5)


def test_nnclr_nearest_neighbour_comes_from_the_support_set():
    sup = NNCLRSupervisor(
        None, hidden_dim=16, projection_dim=4, predictor_hidden_dim=16, support_set_size=3
    )
    z = torch.randn(2, 4)
    torch.testing.assert_close(sup.nearest_neighbour(z), F.normalize(z, dim=1))  # empty set
    support = F.normalize(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]), dim=1)
    sup.support_set.push(support)
    z = torch.tensor([[0.1, 2.0, 0.0, 0.3], [-1.0, 0.0, 3.0, 0.0]])
    torch.testing.assert_close(sup.nearest_neighbour(z), support[[1, 2]])


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "cls,kwargs,argument",
    [
        (MomentumContrastSupervisor, dict(temperature=0.0), "temperature"),
        (MomentumContrastSupervisor, dict(temperature=-0.1), "temperature"),
        (NNCLRSupervisor, dict(temperature=0), "temperature"),
        (MomentumContrastSupervisor, dict(momentum=1.5), "momentum"),
        (MomentumContrastSupervisor, dict(momentum=-0.1), "momentum"),
        (BYOLSupervisor, dict(momentum=1.01), "momentum"),
        (BYOLSupervisor, dict(momentum_schedule="linear"), "momentum_schedule"),
        (MomentumContrastSupervisor, dict(queue_size=0), "queue_size"),
        (MomentumContrastSupervisor, dict(version=3, queue_size=256), "queue_size"),
        (MomentumContrastSupervisor, dict(version=4), "version"),
        (MomentumContrastSupervisor, dict(shuffle_groups=0), "shuffle_groups"),
        (BarlowTwinsSupervisor, dict(lambd=-1.0), "lambd"),
        (VICRegSupervisor, dict(variance=-1.0), "variance"),
        (SimSiamSupervisor, dict(projection_dim=0), "projection_dim"),
    ],
)
def test_invalid_hyper_parameters_name_the_argument(cls, kwargs, argument):
    with pytest.raises(ConfigError, match=f"Invalid {argument}="):
        cls(None, **kwargs)


def test_shuffle_groups_must_divide_the_batch(subset):
    sup = MomentumContrastSupervisor(subset, shuffle_groups=3, **CASES["moco"][1])
    with pytest.raises(ConfigError, match="shuffle_groups"):
        sup.supervise(epochs=1, batch_size=16, progress=False, device="cpu", save=False)
