"""The momentum base (BYOL, MoCo, DINO) and the Polyak average of ``supervise(ema=...)``."""

import pytest
import torch
import torch.nn as nn

from super_selfish import BYOLSupervisor, Callback, DINOSupervisor
from super_selfish.momentum import cosine_momentum, ema_update, frozen_copy

IMAGES = torch.randint(
    0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
)


def small_byol(**kwargs):
    return BYOLSupervisor(
        IMAGES, "convnet-small", hidden_dim=16, projection_dim=8, seed=0, **kwargs
    )


class Snapshots(Callback):
    """(online, momentum copy) parameters before training and after every step."""

    def __init__(self):
        self.steps = []

    def _snap(self, sup):
        return [
            (
                torch.cat([p.detach().flatten() for p in online.parameters()]),
                torch.cat([p.detach().flatten() for p in copy.parameters()]),
            )
            for online, copy in sup.momentum_pairs()
        ]

    def on_train_start(self, sup):
        self.steps.append((None, self._snap(sup)))

    def on_step_end(self, sup, step, metrics):
        self.steps.append((metrics["momentum"], self._snap(sup)))


def test_copies_move_towards_the_online_modules_by_the_scheduled_amount(tmp_path):
    sup = small_byol(momentum=0.5)
    names = [n for n, _ in sup.named_children() if n.startswith("momentum_")]
    assert names == ["momentum_backbone", "momentum_projector"]
    rec = Snapshots()
    history = sup.supervise(
        epochs=1,
        batch_size=8,
        lr=1e-2,
        progress=False,
        device="cpu",
        name=str(tmp_path / "run"),
        callbacks=[rec],
    )
    assert len(rec.steps) == 5
    for step in range(1, 5):
        m, after = rec.steps[step]
        assert m == pytest.approx(cosine_momentum(0.5, step - 1, 4))
        for (_, copy_before), (online, copy_after) in zip(rec.steps[step - 1][1], after):
            torch.testing.assert_close(
                copy_after, m * copy_before + (1 - m) * online, rtol=0, atol=1e-6
            )
    assert rec.steps[1][1][0][1].ne(rec.steps[0][1][0][1]).any()  # step 0 (m 0.5) moved it
    # logged in the history, kept on the supervisor, saved and restored with the checkpoint
    assert history[-1]["momentum"] == 1.0 == sup.current_momentum
    assert small_byol().load(str(tmp_path / "run")).current_momentum == 1.0


def test_checkpoints_with_target_and_teacher_names_still_load():
    byol = small_byol()
    with torch.no_grad():
        for p in byol.momentum_projector.parameters():
            p.add_(1.0)
    old = {k.replace("momentum_", "target_", 1): v for k, v in byol.state_dict().items()}
    assert any(k.startswith("target_projector.") for k in old)
    fresh = small_byol()
    fresh.load_state_dict(old)
    for a, b in zip(fresh.momentum_projector.parameters(), byol.momentum_projector.parameters()):
        assert torch.equal(a, b)

    small = dict(out_dim=8, hidden_dim=8, bottleneck_dim=4)
    dino = DINOSupervisor(IMAGES, "convnet-small", **small)
    old = {k.replace("momentum_", "teacher_", 1): v for k, v in dino.state_dict().items()}
    assert any(k.startswith("teacher_head.") for k in old)
    DINOSupervisor(IMAGES, "convnet-small", **small).load_state_dict(old)


def test_polyak_average_uses_the_same_update_and_copies_buffers():
    online = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    average = frozen_copy(online)
    with torch.no_grad():
        online[0].weight.add_(1.0)
        online[1].running_mean.fill_(3.0)
    before = average[0].weight.clone()
    ema_update(average, online, 0.75)
    torch.testing.assert_close(average[0].weight, 0.75 * before + 0.25 * online[0].weight)
    assert torch.equal(average[1].running_mean, torch.zeros(2))  # buffers left alone
    ema_update(average, online, 0.75, copy_buffers=True)
    assert torch.equal(average[1].running_mean, torch.full((2,), 3.0))
