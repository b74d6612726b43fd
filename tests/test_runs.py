"""Runs and files, data folders, backbone inputs and the command line (issue 13, items 6-15).

Toy supervisors (no augmentation pipeline) and 16-48 image datasets keep these fast; every
CLI test calls ``cli.main([...])`` in-process.
"""
from __future__ import annotations

import io
import json
import os
import stat
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch import nn

from super_selfish import (
    CombinedNet,
    SimCLRSupervisor,
    Supervisor,
    backbones,
    cli,
    console,
    data,
    store,
)
from super_selfish.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    UnknownNameError,
)

sys.path.insert(0, os.path.dirname(__file__))
from toys import ToyRotation

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


def subset(n: int, seed: int = 0, split: str = "train") -> data.TensorImageDataset:
    ds = data.materialize(data.dataset("cifar10-sample", split))
    return ds.subset(torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n])


@pytest.fixture(scope="module")
def ds() -> data.TensorImageDataset:
    return subset(16)  # one step of batch 16 per epoch


def write_images(folder, images, ext=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i}{ext}")


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
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                   if p.is_file())
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
    again = backbones.load(tmp_path / "custom.pt",
                           module=nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
    assert torch.equal(again(x), custom.eval()(x))


# --------------------------------------------------------------------- 8. folders
def test_folder_with_splits_is_a_dataset_root(ds, tmp_path, capsys):
    root = tmp_path / "root"
    for split, part in (("train", ds.images[:12]), ("val", ds.images[12:16])):
        write_images(root / split / "cat", part[::2])
        write_images(root / split / "dog", part[1::2])
    train = data.dataset(str(root))
    assert train.classes == ["cat", "dog"] and len(train) == 12
    assert all("val" not in p.parts for p, _ in train.samples)
    val = data.dataset(str(root), "val")
    assert len(val) == 4 and all("val" in p.parts for p, _ in val.samples)
    test = data.dataset(str(root), "test")  # no test/: val/ stands in, with a note
    assert len(test) == 4
    err = capsys.readouterr().err
    assert "using train/ for split='train'" in err and "val/ serves as the test split" in err
    with pytest.raises(ConfigError, match="split='unlabeled'"):
        data.dataset(str(root), "unlabeled")


def test_flat_folder_is_unlabelled_and_hidden_folders_are_ignored(ds, tmp_path):
    write_images(tmp_path / "flat", ds.images[:5], ext=".jpg")
    write_images(tmp_path / "flat" / ".ipynb_checkpoints", ds.images[:2])
    flat = data.dataset(str(tmp_path / "flat"))
    assert len(flat) == 5 and not flat.has_labels and flat.classes == []


# --------------------------------------------------------------------- 9. dropped images
def test_dropping_more_than_a_tenth_of_the_images_is_announced(capsys):
    images = torch.zeros(450, 3, 8, 8, dtype=torch.uint8)
    data.BatchLoader(data.dataset(images), 256)
    err = capsys.readouterr().err
    assert "leaves 194 of 450 images (43%)" in err and "batch_size=225" in err
    data.BatchLoader(data.dataset(images), 224)  # 2 of 450 dropped: quiet
    assert "leaves" not in capsys.readouterr().err


# --------------------------------------------------------------------- 10. backbone input
def test_backbone_refuses_inputs_that_give_silently_different_features(ds):
    backbone = backbones.build("convnet-small").eval()
    x = ds.images[:4]
    assert torch.allclose(backbone(x), backbone(x.float() / 255))
    normalised = (x.float() / 255 - torch.tensor(backbones.IMAGENET_MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(backbones.IMAGENET_STD).view(1, 3, 1, 1)
    cases = [(x.float(), "divide by 255"), (normalised, "normalised already"),
             (x.permute(0, 2, 3, 1), "permute(0, 3, 1, 2)"), (x[0].float() / 255, "x[None]"),
             (x.long(), "dtype torch.int64")]
    probe = CombinedNet(backbone, nn.Linear(backbone.feature_dim, 10), freeze_backbone=True)
    for bad, fix in cases:
        for model in (backbone, probe):
            with pytest.raises(DataError, match=fix.replace("(", r"\(").replace(")", r"\)")
                               .replace("[", r"\[").replace("]", r"\]")):
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


# --------------------------------------------------------------------- 12. bad files
def test_corrupt_image_is_named_before_training_or_skipped(ds, tmp_path, capsys):
    folder = tmp_path / "imgs" / "any"
    write_images(folder, ds.images[:6], ext=".jpg")
    raw = (folder / "3.jpg").read_bytes()
    (folder / "3.jpg").write_bytes(raw[:len(raw) // 2])  # a truncated download
    (folder / "5.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"2 of 7 images.*3\.jpg.*5\.png.*skip_bad_images=True"):
        data.dataset(str(tmp_path / "imgs"))
    kept = data.dataset(str(tmp_path / "imgs"), skip_bad_images=True)
    assert len(kept) == 5 and "left out 2 of 7 images" in capsys.readouterr().err
    with pytest.raises(DataError, match="no such folder: './no/such/images'"):
        data.dataset("./no/such/images")
    with pytest.raises(UnknownNameError, match="Did you mean 'cifar10'.*no such folder"):
        data.dataset("cifar-10")


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


# --------------------------------------------------------------------- 14. CLI behaviour
def test_cli_refuses_bad_values_before_any_work(capsys, monkeypatch):
    monkeypatch.setattr(data, "dataset", lambda *a, **k: pytest.fail("data was loaded"))
    for argv, flag in ((["--device", "gpu"], "argument --device"),
                       (["--epochs", "-1"], "argument --epochs"),
                       (["--lr", "0"], "argument --lr")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", "simclr", *argv])
        assert exit_info.value.code == 2 and flag in capsys.readouterr().err
    assert cli.main(["train", "simclr", "--set", "temprature=0.2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("[error]") and "Did you mean 'temperature'" in err
    assert cli.main(["train", "simclr", "--resume"]) == 2
    assert "--resume without --name" in capsys.readouterr().err


def test_cli_errors_use_flag_names_and_colour_only_on_a_terminal(capsys, monkeypatch):
    assert cli.main(["eval", "--name", "/no/such/run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("[error] ") and "\x1b[" not in err
    assert cli._flagged("Invalid size=0: expected a positive int.",
                        cli.build_parser().commands["train"]) == \
        "Invalid --size 0: expected a positive int."

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.delenv("NO_COLOR", raising=False)
    console.error("x")
    assert "\x1b[" in sys.stderr.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stderr", Terminal())
    console.error("x")
    assert sys.stderr.getvalue() == "[error] x\n"


def test_cli_version_and_every_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and "super-selfish 0." in capsys.readouterr().out
    parser = cli.build_parser()
    for command, sub in parser.commands.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if action.option_strings and action.dest not in ("help", "version"):
                text = formatter._get_help_string(action)
                assert "default" in text.lower(), f"{command} {action.option_strings}: {text}"


# --------------------------------------------------------------------- 15. CLI reaches the API
def test_method_options_are_parsed_and_checked():
    from super_selfish.methods import MomentumContrastSupervisor as MoCo

    assert cli.method_options(MoCo, ["temperature=0.2", "queue_size=4096"]) == \
        {"temperature": 0.2, "queue_size": 4096}
    assert cli.method_options(MoCo, ["temperature=1"]) == {"temperature": 1.0}
    with pytest.raises(UnknownNameError, match="Did you mean 'queue_size'"):
        cli.method_options(MoCo, ["queue_sise=4096"])
    with pytest.raises(ConfigError, match="--set temperature='hot'"):
        cli.method_options(MoCo, ["temperature=hot"])  # Optional[float]: a number or none
    assert cli.method_options(MoCo, ["temperature=none"]) == {"temperature": None}
    with pytest.raises(ConfigError, match="--set temperature=True: expected float"):
        cli.method_options(SimCLRSupervisor, ["temperature=true"])  # float = 0.5
    with pytest.raises(ConfigError, match="use the flag --backbone"):
        cli.method_options(MoCo, ["backbone=resnet18"])


def test_cli_config_is_written_and_repeats_the_run_and_embed_writes_features(
        ds, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "imgs" / "a", ds.images[:8])
    write_images(tmp_path / "imgs" / "b", ds.images[8:16])
    argv = ["train", "simclr", "--dataset", "imgs", "--epochs", "1", "--batch-size", "8",
            "--set", "temperature=0.2", "hidden_dim=64", "projection_dim=16",
            "--augment", "byol", "--lr", "2e-3", "--weight-decay", "1e-4",
            "--schedule", "constant", "--warmup-epochs", "0.5", "--keep-last", "1",
            "--image-size", "24"]
    assert cli.main(argv) == 0
    (first,) = sorted((tmp_path / "store").glob("simclr-*.pt"))
    written = yaml.safe_load((first.with_suffix("") / "config.yaml").read_text())
    assert written["set"] == {"temperature": 0.2, "hidden_dim": 64, "projection_dim": 16}
    assert written["lr"] == 2e-3 and written["name"] is None
    assert written["resolved"]["hparams"]["augment"] == "byol"
    assert cli.main(["train", "--config", str(first.with_suffix("") / "config.yaml")]) == 0
    runs = sorted((tmp_path / "store").glob("simclr-*.pt"))
    assert len(runs) == 2
    configs = [yaml.safe_load((p.with_suffix("") / "config.yaml").read_text()) for p in runs]
    for config in configs:
        config["resolved"].pop("name")
    assert configs[0] == configs[1]
    hparams = [store.read(p)["hparams"] for p in runs]
    assert hparams[0] == hparams[1] and hparams[0]["image_size"] == 24
    assert (runs[1].with_suffix("") / "checkpoints" / "epoch_0001.pt").exists()
    history = json.loads((runs[1].with_suffix("") / "history.json").read_text())
    assert history[0]["lr"] == pytest.approx(2e-3)

    out = tmp_path / "feats.npy"
    assert cli.main(["embed", "--name", str(runs[0].with_suffix("")), "--dataset", "imgs",
                     "--out", str(out)]) == 0
    features, labels = np.load(out), np.load(tmp_path / "feats.labels.npy")
    assert features.shape == (16, 256) and labels.tolist() == [0] * 8 + [1] * 8
    sup = Supervisor.from_checkpoint(str(runs[0].with_suffix("")))
    expected = sup.get_backbone().eval()(data.materialize(data.dataset("imgs", size=24)).images)
    assert np.allclose(features, expected.detach().numpy(), atol=1e-5)


def test_cli_passes_recipe_flags_only_when_given_and_wires_monitors(ds, tmp_path, monkeypatch):
    from super_selfish import monitors

    write_images(tmp_path / "imgs" / "a", ds.images[:8])
    calls = []

    def fake_supervise(self, **options):  # records what the CLI passes; trains nothing
        calls.append(options)
        self.run_name = str(tmp_path / "run")
        return []

    monkeypatch.setattr(SimCLRSupervisor, "supervise", fake_supervise)
    base = ["train", "simclr", "--dataset", str(tmp_path / "imgs"), "--batch-size", "8",
            "--set", "hidden_dim=64", "projection_dim=16"]
    assert cli.main(base) == 0
    assert not {"lr", "optimizer", "weight_decay", "warmup_epochs", "lr_scheduler"} & set(calls[0])
    assert cli.main([*base, "--lr", "0.1", "--optimizer", "sgd", "--schedule", "cosine",
                     "--warmup-epochs", "2", "--weight-decay", "0", "--knn-every", "2",
                     "--health", "--tensorboard", "--keep-best"]) == 0
    given = calls[1]
    assert (given["lr"], given["lr_scheduler"], given["warmup_epochs"],
            given["weight_decay"], given["keep_best"]) == (0.1, "cosine", 2.0, 0.0, True)
    assert given["optimizer"] == "sgd"  # by name: the recipe builds it with its momentum
    kinds = [type(cb) for cb in given["callbacks"]]
    assert kinds[1:] == [monitors.KNNMonitor, monitors.HealthMonitor, monitors.TensorBoardLogger]
    assert given["callbacks"][1].every == 2
    flat = tmp_path / "flat"
    write_images(flat, ds.images[:8])
    assert cli.main(["train", "simclr", "--dataset", str(flat), "--batch-size", "8",
                     "--knn-every", "1"]) == 2  # unlabelled data: no kNN monitor
