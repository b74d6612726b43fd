"""Memory-bank, predictive and clustering/distillation methods: InstDisc, PIRL, CMC, CPC,
DINO, SwAV (banks, EMA teachers, checkpoints; their losses: tests/losses)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from toys import sample_subset

from super_selfish import augment, data, jigsaw, methods
from super_selfish.color import to_lab
from super_selfish.errors import ConfigError
from super_selfish.methods import (
    ContrastiveMultiviewCodingSupervisor,
    ContrastivePredictiveCodingSupervisor,
    DINOSupervisor,
    InstanceDiscriminationSupervisor,
    PIRLSupervisor,
    SwAVSupervisor,
)
from super_selfish.methods.cpc import ContextNetwork
from super_selfish.momentum import cosine_momentum

# Small heads keep the CPU tests fast; paper defaults are checked in test_paper_defaults.
CASES = {
    "instdisc": (InstanceDiscriminationSupervisor, dict()),
    "pirl": (PIRLSupervisor, dict()),
    "cmc": (ContrastiveMultiviewCodingSupervisor, dict(loss="nce")),  # NCE path, Z saved
    "cpc": (ContrastivePredictiveCodingSupervisor, dict(context_dim=64, context_blocks=2)),
    "dino": (DINOSupervisor, dict(out_dim=256, hidden_dim=128, bottleneck_dim=64)),
    "swav": (SwAVSupervisor, dict(n_prototypes=30, hidden_dim=128, projection_dim=32)),
}
# Multi-crop with 2 global + 2 local crops (the presets' 6 local crops cost CPU time).
MULTI_CROP = {"dino": 2, "swav": 2}


def build(name, dataset=None, image_size=None, **extra):
    cls, kwargs = CASES[name]
    kwargs = {**kwargs, **extra}
    if name in MULTI_CROP:
        size = image_size or (dataset.images.shape[-1] if dataset is not None else 32)
        kwargs["augment"] = augment.build(name, size, n_local=MULTI_CROP[name])
    if image_size is not None:
        kwargs["image_size"] = image_size
    return cls(dataset, **kwargs) if dataset is not None else cls(**kwargs)


# What must learn in each method (module attribute names).
LEARNERS = {
    "instdisc": ["backbone", "head"],
    "pirl": ["backbone", "head", "tile_head", "jigsaw_head"],
    "cmc": ["backbone", "ab_backbone", "head", "ab_head"],
    "cpc": ["backbone", "contexts", "target_projection", "predictors"],
    "dino": ["backbone", "head"],
    "swav": ["backbone", "projector", "prototypes"],
}


@pytest.fixture(scope="module")
def subset():
    return sample_subset(64)


def ready(sup, batch_size, epochs=1):
    """Optimizer, scheduler, loader and generators without training (epochs=0)."""
    sup.supervise(
        epochs=0,
        batch_size=batch_size,
        progress=False,
        save=False,
        device="cpu",
        lr=1e-2,
        lr_scheduler="constant",
    )  # the recipe's cosine is 0 after 0 epochs
    sup.total_steps = epochs * len(sup.loader)
    return sup


def batches(sup):
    return [b.to("cpu") for b in sup.loader]


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


# ---------------------------------------------------------------------------- registry, defaults
def test_registered_names_and_paper_defaults():
    for name, (cls, _) in CASES.items():
        assert methods.get(name) is cls and cls.method == name
    inst = InstanceDiscriminationSupervisor()
    assert inst.criterion.temperature == 0.07 and inst.n_negatives == 4096
    assert inst.memory.momentum == 0.5 and inst.memory.items.shape[1] == 128
    assert inst.criterion.mode == "softmax" and inst.proximal == 0.0
    pirl = PIRLSupervisor()
    assert pirl.lam == 0.5 and pirl.criterion.temperature == 0.07 and pirl.memory.momentum == 0.5
    assert (pirl.grid, pirl.tile_size) == (2, 12)  # 32 px: 2x2 grid, tiles of 16 * 64/85 px
    assert PIRLSupervisor(image_size=96).grid == 3
    cmc = ContrastiveMultiviewCodingSupervisor()
    assert cmc.backbone.in_channels == 1 and cmc.ab_backbone.in_channels == 2
    assert cmc.criterion.temperature == 0.07 and cmc.ab_memory.momentum == 0.5
    cpc = ContrastivePredictiveCodingSupervisor()
    assert (cpc.patch_size, cpc.patch_stride, cpc.grid) == (8, 4, 7)
    assert cpc.steps == (3,) and cpc.directions == ("top-down",) and cpc.hparams["norm"] == "layer"
    assert cpc.target_projection.out_channels == 64 and len(cpc.context.blocks) == 5
    assert ContrastivePredictiveCodingSupervisor(image_size=96).patch_size == 24
    dino = DINOSupervisor()
    assert dino.criterion.student_temp == 0.1 and dino.criterion.center_momentum == 0.9
    assert dino.teacher_temp == 0.04 and dino.momentum == 0.996
    assert dino.head.last_layer.weight.shape == (4096, 256)
    assert not dino.head.last_layer.parametrizations.weight.original0.requires_grad
    assert isinstance(dino.head.mlp[1], torch.nn.BatchNorm1d)  # head_norm="batch"
    assert len(dino.views) == 8 and dino.views.sizes[0] == (32, 32)
    swav = SwAVSupervisor()
    assert swav.prototypes.weight.shape == (3000, 128) and swav.queues[0].size == 3840
    assert (swav.criterion.temperature, swav.criterion.epsilon) == (0.1, 0.05)
    assert swav.criterion.sinkhorn_iterations == 3
    assert torch.allclose(swav.prototypes.weight.norm(dim=1), torch.ones(3000))
    # Memory-bank methods train at 3e-4 by default (stale banks), the others at 1e-3.
    assert [CASES[n][0].default_lr for n in CASES] == [3e-4, 3e-4, 3e-4, 1e-3, 1e-3, 1e-3]


# ---------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", list(CASES))
def test_epoch_trains_every_part_and_checkpoint_restores_exactly(name, subset, tmp_path):
    run = str(tmp_path / "run")
    sup = build(name, subset, seed=0)
    before = params(sup)
    trainable = {n for n, p in sup.named_parameters() if p.requires_grad}
    history = sup.supervise(
        lr=1e-3, epochs=1, batch_size=32, name=run, progress=False, device="cpu"
    )
    assert len(history) == 1 and math.isfinite(history[0]["loss"])
    after = params(sup)
    for module in LEARNERS[name]:
        names = [k for k in before if k.split(".")[0] == module and k in trainable]
        assert names, module
        moved = [k for k in names if not torch.equal(before[k], after[k])]
        # Every trainable tensor moved, DINO's last layer and SwAV's prototypes included: their
        # default freeze window is at most a tenth of the run.
        assert set(names) == set(moved), (module, set(names) - set(moved))
    # Nothing frozen ever has a gradient.
    for n, p in sup.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, n
    # The checkpoint restores every weight and buffer (banks, queues, centre, NCE Z) exactly,
    # also into a supervisor built without a dataset.
    fresh = build(name).load(run)
    saved, loaded = sup.state_dict(), fresh.state_dict()
    assert saved.keys() == loaded.keys()
    for k in saved:
        assert torch.equal(saved[k], loaded[k]), k
    if name == "cmc":  # NCE: the normaliser Z was estimated once and is restored
        assert bool(fresh.criterion.z_estimated) and fresh.criterion.log_z != 0
    x = subset.images[:4]
    a, b = sup.get_backbone().eval(), fresh.get_backbone().eval()
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", list(CASES))
def test_resnet18_builds_at_32_and_steps_at_96(name):
    small = build(name, backbone="resnet18", image_size=32)
    assert small.get_backbone()(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape[0] == 2
    images = data.dataset(torch.randint(0, 256, (8, 3, 96, 96), dtype=torch.uint8))
    sup = build(name, images, backbone="resnet18", seed=0)
    assert sup.image_size == 96
    ready(sup, 8)
    before = params(sup.backbone)
    loss = sup._train_step(batches(sup)[0], 0, 0)
    assert loss is not None and math.isfinite(loss)
    assert any(not torch.equal(before[k], v) for k, v in sup.backbone.named_parameters())
    features = sup.get_backbone().eval()(images.images[:2])
    dim = 1024 if name == "cmc" else 512
    assert features.shape == (2, dim) and sup.get_backbone().feature_dim == dim


# ---------------------------------------------------------------------------- memory banks
def test_memory_bank_update_rule_and_positive_never_negative(subset):
    sup = ready(InstanceDiscriminationSupervisor(subset, seed=0), 32)
    batch = batches(sup)[0]
    recorded = []
    original = sup._defer_bank_update

    def spy(bank, index, features):
        recorded.append((index.clone(), features.detach().clone()))
        original(bank, index, features)

    sup._defer_bank_update = spy
    bank_before = sup.memory.items.clone()
    sup._train_step(batch, 0, 0)
    ((index, features),) = recorded
    expected = F.normalize(0.5 * bank_before[index] + 0.5 * features, dim=1)
    assert torch.allclose(sup.memory.items[index], expected, atol=1e-6)
    untouched = torch.ones(len(bank_before), dtype=torch.bool)
    untouched[index] = False
    assert torch.equal(sup.memory.items[untouched], bank_before[untouched])
    # Negatives: with n = N - 1 every other row appears, the query's own row never does.
    sup.memory.items.copy_(torch.eye(64, 128))  # row i is the one-hot e_i: rows identify
    negatives = sup._negatives(sup.memory, index, 10_000)
    assert negatives.shape == (32, 63, 128)
    drawn = negatives.argmax(dim=2)
    assert not (drawn == index[:, None]).any()
    # The cap: n_negatives is capped below the dataset size.
    assert sup._negatives(sup.memory, index, 4096).shape[1] == 63


def test_cmc_contrasts_each_view_with_the_other_views_bank(subset):
    sup = ready(ContrastiveMultiviewCodingSupervisor(subset, seed=0), 32)
    calls = []
    for crit, tag in ((sup.criterion, "l"), (sup.ab_criterion, "ab")):
        crit.register_forward_hook(lambda m, args, out, tag=tag: calls.append((tag, args)))
    batch = batches(sup)[0]
    l_bank, ab_bank = sup.memory.items.clone(), sup.ab_memory.items.clone()
    sup._train_step(batch, 0, 0)
    (_, (q_l, pos_l, _)), (_, (q_ab, pos_ab, _)) = calls
    assert torch.equal(pos_l, ab_bank[batch.index]) and torch.equal(pos_ab, l_bank[batch.index])
    # Each bank received its own view's features.
    assert torch.allclose(
        sup.memory.items[batch.index],
        F.normalize(0.5 * l_bank[batch.index] + 0.5 * q_l.detach(), dim=1),
        atol=1e-6,
    )
    assert torch.allclose(
        sup.ab_memory.items[batch.index],
        F.normalize(0.5 * ab_bank[batch.index] + 0.5 * q_ab.detach(), dim=1),
        atol=1e-6,
    )
    # get_backbone: RGB in, [f_L(L), f_ab(ab)] out.
    images = subset.images[:3]
    sup.eval()
    lab = to_lab(images)
    expected = torch.cat([sup.backbone(lab[:, :1]), sup.ab_backbone(lab[:, 1:])], dim=1)
    assert torch.allclose(sup.get_backbone()(images), expected)


def test_pirl_jigsaw_branch(subset):
    sup = PIRLSupervisor(subset, seed=0)
    assert sup.jigsaw_head[0].in_features == 4 * 128
    images = subset.images[:4].float() / 255
    sup._aug_gen = torch.Generator().manual_seed(0)
    tiles = sup.jigsaw_tiles(images)
    assert tiles.shape == (4, 4, 3, sup.tile_size, sup.tile_size)
    # Without colour jitter, the shuffled tiles are a permutation of the cut tiles.
    sup.tile_jitter = False
    sup._aug_gen = torch.Generator().manual_seed(1)
    shuffled = sup.jigsaw_tiles(images)
    cut = jigsaw.cut_tiles(images, 2, sup.tile_size, generator=torch.Generator().manual_seed(1))
    match = (shuffled[:, :, None] == cut[:, None]).flatten(3).all(-1)  # (N, slot, tile)
    assert (match.sum(-1) == 1).all()
    assert not all(torch.equal(match[i].int().argmax(-1), torch.arange(4)) for i in range(4))


# ---------------------------------------------------------------------------- teacher, queues
def test_dino_teacher_follows_ema_and_last_layer_unfreezes(subset):
    sup = ready(build("dino", subset, seed=0, momentum=0.9, freeze_last_layer_steps=1), 32)
    b0, b1 = batches(sup)
    v_key = "head.last_layer.parametrizations.weight.original1"
    start = params(sup)
    teacher0 = [p.clone() for _, t in sup.momentum_pairs() for p in t.parameters()]
    assert all(not p.requires_grad for _, t in sup.momentum_pairs() for p in t.parameters())
    center0 = sup.criterion.center.clone()
    sup._train_step(b0, 0, 0)
    assert torch.equal(params(sup)[v_key], start[v_key])  # step 0: last layer frozen
    assert not torch.equal(sup.criterion.center, center0)
    m = cosine_momentum(0.9, 0, sup.total_steps)
    assert m == pytest.approx(0.9)
    teacher1 = [p for _, t in sup.momentum_pairs() for p in t.parameters()]
    student1 = [p for s, _ in sup.momentum_pairs() for p in s.parameters()]
    for t0, t1, s1 in zip(teacher0, teacher1, student1):
        assert torch.allclose(t1, m * t0 + (1 - m) * s1, atol=1e-6)
        assert t1.grad is None
    sup._train_step(b1, 0, 1)
    assert not torch.equal(params(sup)[v_key], start[v_key])  # step 1: it learns
    m1 = cosine_momentum(0.9, 1, sup.total_steps)
    assert m1 == 1.0  # the schedule ends at 1: the teacher stops moving
    teacher2 = [p for _, t in sup.momentum_pairs() for p in t.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(teacher1, teacher2))


def test_swav_queue_and_prototype_freeze(subset):
    sup = ready(
        build(
            "swav", subset, seed=0, queue_length=32, queue_start_epoch=0, freeze_prototypes_steps=2
        ),
        16,
    )
    seen = []
    sup.criterion.register_forward_hook(
        lambda m, args, out: seen.append([q is not None for q in args[2]])
    )
    proto0 = sup.prototypes.weight.clone()
    steps = batches(sup)
    for i, batch in enumerate(steps):
        sup._train_step(batch, 0, i)
        if i < 2:
            assert torch.allclose(sup.prototypes.weight, proto0)  # frozen for 2 steps
    assert seen == [[False, False], [False, False], [True, True], [True, True]]
    assert int(sup.queues[0].filled) == 32 and int(sup.queues[1].filled) == 32
    sup.normalize_prototypes()
    assert not torch.allclose(sup.prototypes.weight, proto0)
    assert torch.allclose(sup.prototypes.weight.norm(dim=1), torch.ones(30))


# ---------------------------------------------------------------------------- CPC specifics
def test_cpc_context_is_causal_top_to_bottom():
    torch.manual_seed(0)
    net = ContextNetwork(8, hidden=16, blocks=3)
    codes = torch.randn(2, 8, 7, 7)
    out = net(codes)
    for row in range(6):
        changed = codes.clone()
        changed[:, :, row + 1 :] = torch.randn_like(changed[:, :, row + 1 :])
        again = net(changed)
        assert torch.allclose(again[:, :, : row + 1], out[:, :, : row + 1])
        assert not torch.allclose(again[:, :, row + 1 :], out[:, :, row + 1 :])


def test_too_small_images_raise_config_error():
    tiny = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    with pytest.raises(ConfigError, match=r"image_size=16.*at least 32"):
        ContrastivePredictiveCodingSupervisor(tiny)
    with pytest.raises(ConfigError, match=r"image_size=16.*at least 22"):
        PIRLSupervisor(tiny)
    with pytest.raises(ConfigError, match="image_size=24"):
        ContrastivePredictiveCodingSupervisor(image_size=24)
