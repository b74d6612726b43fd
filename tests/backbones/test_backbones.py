"""Backbones: every registered backbone at 32 and 96 px, user modules, norm choice, CombinedNet,
inputs that would give silently different features, torchvision classifiers removed."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from toys import sample_subset

from super_selfish import CombinedNet, backbones, data
from super_selfish.errors import DataError


@pytest.fixture(scope="module")
def ds() -> data.TensorImageDataset:
    return sample_subset(16)


@pytest.mark.parametrize("name", backbones.available())
def test_every_registry_backbone_runs_32_and_96_px(name):
    torch.manual_seed(0)
    net = backbones.build(name).eval()
    for size in (32, 96):
        with torch.no_grad():
            out = net(torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8))
        assert out.shape == (2, net.feature_dim)
    expected = {
        "convnet-small": 256,
        "resnet18": 512,
        "resnet50": 2048,
        "cifar-resnet18": 512,
        "efficientnet-b0": 1280,
        "efficientnet-b7": 2560,
    }
    if name in expected:
        assert net.feature_dim == expected[name]


def test_user_module_and_norm_choice():
    body = nn.Sequential(nn.Conv2d(3, 7, 3), nn.BatchNorm2d(7), nn.ReLU())
    net = backbones.build(body)
    assert net.feature_dim == 7 and net(torch.rand(3, 3, 20, 20)).shape == (3, 7)
    layer = backbones.build("convnet-small", norm="layer")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in layer.modules())
    x = torch.rand(4, 3, 32, 32)
    layer.eval()
    alone = layer(x[:1])
    assert torch.allclose(alone, layer(x)[:1], atol=1e-5)  # no statistics shared in a batch


def test_combined_net_freezes_backbone():
    net = CombinedNet(backbones.build("convnet-small"), nn.Linear(256, 10), freeze_backbone=True)
    net.train()
    assert not net.backbone.training
    net(torch.rand(4, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert net.head.weight.grad is not None


# --------------------------------------------------------------------- 10. backbone input
def test_backbone_refuses_inputs_that_give_silently_different_features(ds):
    backbone = backbones.build("convnet-small").eval()
    x = ds.images[:4]
    assert torch.allclose(backbone(x), backbone(x.float() / 255))
    normalised = (
        x.float() / 255 - torch.tensor(backbones.IMAGENET_MEAN).view(1, 3, 1, 1)
    ) / torch.tensor(backbones.IMAGENET_STD).view(1, 3, 1, 1)
    cases = [
        (x.float(), "divide by 255"),
        (normalised, "normalised already"),
        (x.permute(0, 2, 3, 1), "permute(0, 3, 1, 2)"),
        (x[0].float() / 255, "x[None]"),
        (x.long(), "dtype torch.int64"),
    ]
    probe = CombinedNet(backbone, nn.Linear(backbone.feature_dim, 10), freeze_backbone=True)
    for bad, fix in cases:
        for model in (backbone, probe):
            with pytest.raises(
                DataError,
                match=fix.replace("(", r"\(")
                .replace(")", r"\)")
                .replace("[", r"\[")
                .replace("]", r"\]"),
            ):
                model(bad)
    # training mode: the range is checked on the first calls, then no longer
    backbone.train()
    with pytest.raises(DataError):
        backbone(x.float())
    for _ in range(backbones.TRAIN_CALLS_CHECKED):
        backbone(x.float() / 255)
    backbone(x.float())  # not checked any more: the hot path pays nothing


# --------------------------------------------------------------------- 11. torchvision models
def test_torchvision_classifier_is_removed(capsys):
    import torchvision

    resnet = backbones.build(torchvision.models.resnet18(), probe_size=32)
    assert resnet.feature_dim == 512 and isinstance(resnet.body.fc, nn.Identity)
    mobile = backbones.build(torchvision.models.mobilenet_v3_small(), probe_size=32)
    assert mobile.feature_dim == 1024  # the hidden layer before the 1000-way logits
    err = capsys.readouterr().err
    assert "classifier fc (Linear 512 -> 1000) was replaced" in err
    assert "classifier.3 (Linear 1024 -> 1000)" in err

    class Mine(nn.Module):  # not torchvision: its fc is the user's, left alone
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.conv(x).mean(dim=(2, 3)))

    assert backbones.build(Mine()).feature_dim == 2
