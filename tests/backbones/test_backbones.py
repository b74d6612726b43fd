"""Backbones: every registered backbone at 32 and 96 px, user modules, norm choice and
CombinedNet."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from super_selfish import CombinedNet, backbones


@pytest.mark.parametrize("name", backbones.available())
def test_every_registry_backbone_runs_32_and_96_px(name):
    torch.manual_seed(0)
    net = backbones.build(name).eval()
    for size in (32, 96):
        with torch.no_grad():
            out = net(torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8))
        assert out.shape == (2, net.feature_dim)
    expected = {"convnet-small": 256, "resnet18": 512, "resnet50": 2048,
                "cifar-resnet18": 512, "efficientnet-b0": 1280, "efficientnet-b7": 2560}
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
