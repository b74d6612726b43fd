"""Runs and their files (issue 13, items 6, 7 and 13): no silent overwrite, one checkpoint per run,
a backbone saved alone, from_checkpoint keeping the image size and a user's subclass.

Toy supervisors (no augmentation pipeline) and a 16-image dataset keep these fast.
"""

from __future__ import annotations

import os
import stat

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from toys import ToyRotation, sample_subset

from super_selfish import SimCLRSupervisor, Supervisor, backbones, data, store
from super_selfish.errors import CheckpointError, ConfigError

SMALL = {"hidden_dim": 64, "projection_dim": 16}


class ToyFlip(ToyRotation):
    """A second cheap method: predicts a horizontal flip (another method name on disk)."""

    method = "toy-flip"

    def __init__(self, dataset=None, backbone="convnet-small", *, width: int = 2, **kwargs):
        super().__init__(dataset, backbone, **kwargs)
        self.head = nn.Linear(self.backbone.feature_dim, width)
        self._record_hparams(width=width)

    def _forward(self, batch):
        flip = batch.index % 2
        images = torch.where(flip.view(-1, 1, 1, 1).bool(), batch.images.flip(-1), batch.images)
        return F.cross_entropy(self.head(self.backbone(images)), flip)


@pytest.fixture(scope="module")
def ds() -> data.TensorImageDataset:
    return sample_subset(16)  # one step of batch 16 per epoch


def quick(sup, **kw):
    options = {"epochs": 1, "batch_size": 16, "progress": False}
    options.update(kw)
    return sup.supervise(**options)


# --------------------------------------------------------------------- 6. no silent overwrite
def test_runs_without_a_name_never_share_a_checkpoint(ds, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    first, second = ToyRotation(ds, seed=0), ToyFlip(ds, seed=0)
    quick(first)
    quick(second)
    assert first.run_name != second.run_name
    assert first.run_name.startswith("store/toy-rotation-")
    assert second.run_name.startswith("store/toy-flip-")
    for sup in (first, second):
        assert store.read(sup.run_name)["method"] == sup.method
    err = capsys.readouterr().err
    assert f"checkpoint {store.checkpoint_path(second.run_name)}" in err
    assert f"{store.run_dir(second.run_name)}/history.{{json,csv}}" in err
    # the same method twice within one second gets a suffix, not the same file
    third = ToyRotation(ds, seed=0)
    quick(third)
    assert len({first.run_name, third.run_name}) == 2
    # resuming needs a name, and the message points at the latest run
    with pytest.raises(ConfigError, match="name=None with pretrained=True.*latest toy-rotation"):
        quick(ToyRotation(ds), pretrained=True)


def test_a_named_run_refuses_another_methods_checkpoint(ds, tmp_path, capsys):
    name = str(tmp_path / "run")
    quick(ToyRotation(ds, seed=0), name=name)
    before = store.checkpoint_path(name).read_bytes()
    with pytest.raises(CheckpointError, match="'toy-rotation'.*overwrite=True"):
        quick(ToyFlip(ds), name=name)
    assert store.checkpoint_path(name).read_bytes() == before
    quick(ToyFlip(ds), name=name, overwrite=True)
    assert store.read(name)["method"] == "toy-flip"
    capsys.readouterr()
    quick(ToyFlip(ds), name=name)  # the same method: replaced, and said so
    assert "holds an earlier toy-flip run" in capsys.readouterr().err


# --------------------------------------------------------------------- 7. checkpoint files
def test_one_checkpoint_per_run_by_default_and_one_file_mode(ds, tmp_path):
    name = str(tmp_path / "run")
    quick(ToyRotation(ds, seed=0), name=name, epochs=2)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["run.pt", "run/history.csv", "run/history.json"]
    modes = {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*") if p.is_file()}
    assert len(modes) == 1, modes


def test_backbone_alone_saves_and_loads(ds, tmp_path):
    sup = ToyRotation(ds, seed=0, norm="group", image_size=24)
    quick(sup, name=str(tmp_path / "run"))
    path = sup.save_backbone(tmp_path / "encoder.pt")
    assert os.path.getsize(path) < os.path.getsize(tmp_path / "run.pt")
    loaded = backbones.load(path)
    assert (loaded.name, loaded.norm, loaded.probe_size) == ("convnet-small", "group", 24)
    x = ds.images[:4]
    assert torch.equal(loaded(x), sup.get_backbone().eval()(x))
    with pytest.raises(CheckpointError, match="backbones.load"):
        Supervisor.from_checkpoint(path)
    with pytest.raises(CheckpointError, match="training checkpoint"):
        backbones.load(tmp_path / "run")
    # a user-defined module: weights only, the module is rebuilt by the user
    body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    custom = backbones.build(body)
    backbones.save(custom, tmp_path / "custom.pt")
    with pytest.raises(CheckpointError, match=r"module=MyNet"):
        backbones.load(tmp_path / "custom.pt")
    again = backbones.load(
        tmp_path / "custom.pt", module=nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    )
    assert torch.equal(again(x), custom.eval()(x))


# --------------------------------------------------------------------- 13. from_checkpoint
def test_from_checkpoint_keeps_image_size_and_user_subclass(ds, tmp_path):
    name = str(tmp_path / "run")
    sup = ToyFlip(ds, seed=0, image_size=24, width=3)
    quick(sup, name=name)
    rebuilt = Supervisor.from_checkpoint(name)
    assert type(rebuilt) is ToyFlip
    assert (rebuilt.image_size, rebuilt.hparams["width"]) == (24, 3)
    x = ds.images[:4]
    assert torch.equal(rebuilt.get_backbone().eval()(x), sup.get_backbone().eval()(x))
    simclr = SimCLRSupervisor(ds, image_size=24, temperature=0.3, **SMALL)
    simclr.save(str(tmp_path / "simclr"))
    again = Supervisor.from_checkpoint(str(tmp_path / "simclr"))
    assert again.image_size == 24 and again.hparams["temperature"] == 0.3
