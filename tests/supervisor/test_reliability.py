"""Reliability and safety (issue 8): input validation, honest checkpoints, interruptions,
divergence guard and reproducibility. SimCLR on convnet-small, small cifar10-sample subsets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset
from toys import sample_subset

import super_selfish
from super_selfish import Callback, SimCLRSupervisor, data, store
from super_selfish.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DivergenceError,
    SuperSelfishError,
    UnknownNameError,
)
from super_selfish.memory import Queue
from super_selfish.methods import registry
from super_selfish.momentum import ema_update, frozen_copy

REPO = Path(super_selfish.__file__).resolve().parent.parent
SMALL = dict(hidden_dim=128, projection_dim=32)  # a small projector keeps CPU steps fast


@pytest.fixture(scope="module")
def ds() -> data.TensorImageDataset:
    return sample_subset(64)


def state_of(sup: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in sup.state_dict().items()}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different[:5]}"


def files_under(folder: Path) -> list:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ---------------------------------------------------------------------------------------------
# 1. Input validation at the boundary
# ---------------------------------------------------------------------------------------------
class _MixedSizes(Dataset):
    """Alternates 32 px and 24 px images, so every batch mixes sizes."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int):
        side = 32 if i % 2 == 0 else 24
        return torch.full((3, side, side), i, dtype=torch.uint8), i % 10


class _NeedsLabels(SimCLRSupervisor):
    needs_labels = True


def _sup(ds, **kw):
    return SimCLRSupervisor(ds, **SMALL, **kw)


def _train(ds, name, **kw):
    options = dict(lr=1e-3, epochs=1, batch_size=16, name=name, progress=False)
    options.update(kw)
    return _sup(ds).supervise(**options)


def _method(name, ds, **kw):
    return registry.get(name)(ds, backbone="convnet-small", **kw)


def _tiny():
    return data.TensorImageDataset(torch.randint(0, 256, (32, 3, 12, 12), dtype=torch.uint8))


def _nan_images():
    x = torch.rand(8, 3, 32, 32)
    x[3, 1, 4, 4] = float("nan")
    return x


def _inf_images():
    x = torch.rand(8, 3, 32, 32)
    x[0, 0, 0, 0] = float("inf")
    return x


# (id, call(ds, name, tmp_path), exception type, substrings the message must contain: the
# argument, what was received, what is expected)
BAD_INPUTS = [
    (
        "empty-dataset",
        lambda ds, n, t: _sup(torch.zeros(0, 3, 32, 32, dtype=torch.uint8)),
        DataError,
        ["dataset is empty", "at least one image"],
    ),
    ("empty-folder", lambda ds, n, t: _sup(str(t)), DataError, ["dataset folder", "no images"]),
    (
        "batch-larger-than-dataset",
        lambda ds, n, t: _train(ds, n, batch_size=128),
        DataError,
        ["batch_size=128", "64 images", "batch_size <= 64"],
    ),
    (
        "mixed-sizes-without-resize",
        lambda ds, n, t: _train(_MixedSizes(), n),
        DataError,
        ["different sizes", "(3, 24, 24)", "size="],
    ),
    ("nan-pixels", lambda ds, n, t: _sup(_nan_images()), DataError, ["dataset", "NaN"]),
    ("inf-pixels", lambda ds, n, t: _sup(_inf_images()), DataError, ["dataset", "infinite"]),
    (
        "float-range-0-255",
        lambda ds, n, t: _sup(torch.rand(8, 3, 32, 32) * 255),
        DataError,
        ["dataset", "floats in [0", "expected floats in [0, 1]"],
    ),
    (
        "negative-integers",
        lambda ds, n, t: _sup(torch.randint(-5, 5, (8, 3, 32, 32))),
        DataError,
        ["dataset", "torch.int64", "expected uint8"],
    ),
    (
        "bool-dtype",
        lambda ds, n, t: _sup(torch.ones(8, 3, 32, 32, dtype=torch.bool)),
        DataError,
        ["dataset", "torch.bool", "expected uint8"],
    ),
    (
        "beyond-16-bit",
        lambda ds, n, t: _sup(torch.full((8, 3, 32, 32), 70000)),
        DataError,
        ["dataset", "70000", "16-bit (0-65535)"],
    ),
    (
        "five-channels",
        lambda ds, n, t: _sup(torch.zeros(8, 5, 32, 32, dtype=torch.uint8)),
        DataError,
        ["dataset", "5 channels", "3 (RGB)"],
    ),
    (
        "wrong-ndim",
        lambda ds, n, t: _sup(torch.zeros(8, 32, dtype=torch.uint8)),
        DataError,
        ["dataset", "(8, 32)", "(N, C, H, W)"],
    ),
    (
        "non-square-images",
        lambda ds, n, t: _sup(torch.zeros(8, 3, 32, 24, dtype=torch.uint8)),
        DataError,
        ["32x24", "square", "size="],
    ),
    (
        "images-too-small",
        lambda ds, n, t: _sup(torch.zeros(8, 3, 4, 4, dtype=torch.uint8)),
        DataError,
        ["4x4", "at least 8x8", "size=N"],
    ),
    (
        "image-size-too-small",
        lambda ds, n, t: _sup(ds, image_size=4),
        ConfigError,
        ["image_size=4", "at least 8"],
    ),
    (
        "unsupported-dataset-type",
        lambda ds, n, t: _sup({"images": 1}),
        DataError,
        ["dataset of type dict", "torch Dataset"],
    ),
    (
        "labels-mismatch",
        lambda ds, n, t: _sup((torch.zeros(8, 3, 32, 32, dtype=torch.uint8), torch.zeros(5))),
        DataError,
        ["8 images", "5 labels", "one label per image"],
    ),
    (
        "method-needs-labels",
        lambda ds, n, t: _NeedsLabels(ds.images),
        DataError,
        ["needs labels", "yields none", "(images, labels)"],
    ),
    (
        "unknown-method",
        lambda ds, n, t: registry.get("simclrr"),
        UnknownNameError,
        ["method 'simclrr'", "Did you mean 'simclr'", "simclr"],
    ),
    (
        "unknown-backbone",
        lambda ds, n, t: _sup(ds, backbone="resnet81"),
        UnknownNameError,
        ["backbone 'resnet81'", "Did you mean", "convnet-small"],
    ),
    (
        "unknown-augmentation",
        lambda ds, n, t: _sup(ds, augment="simclrr"),
        UnknownNameError,
        ["augmentation preset 'simclrr'", "Did you mean 'simclr'", "byol"],
    ),
    (
        "unknown-augmentation-op",
        lambda ds, n, t: _sup(ds, augment=["hflipp"]),
        UnknownNameError,
        ["augmentation op 'hflipp'", "Did you mean"],
    ),
    (
        "unknown-dataset",
        lambda ds, n, t: data.dataset("cifar-10"),
        UnknownNameError,
        ["dataset 'cifar-10'", "Did you mean 'cifar10'", "cifar10-sample"],
    ),
    (
        "unknown-split",
        lambda ds, n, t: data.dataset("cifar10-sample", split="val"),
        ConfigError,
        ["split='val'", "('train', 'test')"],
    ),
    (
        "resize-size-zero",
        lambda ds, n, t: data.dataset(ds, size=0),
        ConfigError,
        ["size=0", "positive int"],
    ),
    (
        "unknown-norm",
        lambda ds, n, t: _sup(ds, norm="instance"),
        ConfigError,
        ["norm='instance'", "batch"],
    ),
    ("negative-seed", lambda ds, n, t: _sup(ds, seed=-1), ConfigError, ["seed=-1", "non-negative"]),
    (
        "temperature-zero",
        lambda ds, n, t: _sup(ds, temperature=0.0),
        ConfigError,
        ["temperature=0.0", "positive"],
    ),
    (
        "temperature-negative",
        lambda ds, n, t: _sup(ds, temperature=-0.5),
        ConfigError,
        ["temperature=-0.5", "positive"],
    ),
    ("lr-zero", lambda ds, n, t: _train(ds, n, lr=0.0), ConfigError, ["lr=0.0", "positive"]),
    ("lr-nan", lambda ds, n, t: _train(ds, n, lr=float("nan")), ConfigError, ["lr=nan", "finite"]),
    (
        "epochs-negative",
        lambda ds, n, t: _train(ds, n, epochs=-1),
        ConfigError,
        ["epochs=-1", "non-negative int"],
    ),
    (
        "batch-size-one",
        lambda ds, n, t: _train(ds, n, batch_size=1),
        ConfigError,
        ["batch_size=1", "at least 2"],
    ),
    (
        "weight-decay-negative",
        lambda ds, n, t: _train(ds, n, weight_decay=-1e-4),
        ConfigError,
        ["weight_decay=-0.0001", "non-negative"],
    ),
    (
        "warmup-not-a-number",
        lambda ds, n, t: _train(ds, n, warmup_epochs="2"),
        ConfigError,
        ["warmup_epochs='2'", "non-negative number"],
    ),
    (
        "unknown-precision",
        lambda ds, n, t: _train(ds, n, precision="fp8"),
        ConfigError,
        ["precision='fp8'", "bf16"],
    ),
    (
        "unknown-scheduler",
        lambda ds, n, t: _train(ds, n, lr_scheduler="linear"),
        ConfigError,
        ["lr_scheduler='linear'", "cosine"],
    ),
    (
        "keep-last-negative",
        lambda ds, n, t: _train(ds, n, keep_last=-1),
        ConfigError,
        ["keep_last=-1", "non-negative"],
    ),
    (
        "num-workers-negative",
        lambda ds, n, t: _train(ds, n, num_workers=-1),
        ConfigError,
        ["num_workers=-1", "non-negative"],
    ),
    (
        "grad-clip-zero",
        lambda ds, n, t: _train(ds, n, grad_clip=0),
        ConfigError,
        ["grad_clip=0", "positive"],
    ),
    (
        "unknown-device",
        lambda ds, n, t: _train(ds, n, device="gpu"),
        ConfigError,
        ["device='gpu'", "'cpu'"],
    ),
    ("empty-run-name", lambda ds, n, t: _train(ds, ""), ConfigError, ["name=''", "store/"]),
    (
        "optimizer-not-callable",
        lambda ds, n, t: _train(ds, n, optimizer=0.01),
        ConfigError,
        ["optimizer=0.01", "torch.optim.Adam"],
    ),
    (
        "optimizer-unknown-name",
        lambda ds, n, t: _train(ds, n, optimizer="adma"),
        UnknownNameError,
        ["optimizer 'adma'", "Did you mean 'adam'"],
    ),
    (
        "callback-not-a-callback",
        lambda ds, n, t: _train(ds, n, callbacks=[print]),
        ConfigError,
        ["callbacks=", "Callback instances"],
    ),
    (
        "resume-without-checkpoint",
        lambda ds, n, t: _train(ds, n, pretrained=True),
        CheckpointError,
        ["No checkpoint", "run.pt", "name="],
    ),
    (
        "misspelt-argument",
        lambda ds, n, t: SimCLRSupervisor(ds, temprature=0.1),
        UnknownNameError,
        ["SimCLRSupervisor argument 'temprature'", "Did you mean 'temperature'"],
    ),
    # Hyper-parameters and image sizes checked by the other methods.
    (
        "moco-momentum-above-1",
        lambda ds, n, t: _method("moco", ds, momentum=1.5),
        ConfigError,
        ["momentum=1.5", "[0, 1]"],
    ),
    (
        "byol-momentum-negative",
        lambda ds, n, t: _method("byol", ds, momentum=-0.1),
        ConfigError,
        ["momentum=-0.1", "[0, 1]"],
    ),
    (
        "moco-temperature-zero",
        lambda ds, n, t: _method("moco", ds, temperature=0),
        ConfigError,
        ["temperature=0", "positive"],
    ),
    (
        "moco-queue-not-multiple-of-batch",
        lambda ds, n, t: _method("moco", ds, queue_size=100).supervise(
            lr=1e-3, epochs=1, batch_size=16, name=n, progress=False
        ),
        ConfigError,
        ["queue_size=100", "multiple of the global batch size 16"],
    ),
    (
        "jigsaw-grid-too-fine",
        lambda ds, n, t: _method("jigsaw", ds, grid=5),
        ConfigError,
        ["grid=5", "2, 3 or 4"],
    ),
    (
        "jigsaw-images-too-small",
        lambda ds, n, t: _method("jigsaw", _tiny(), grid=4),
        ConfigError,
        ["image_size=12", "at least 20 pixels"],
    ),
    (
        "cpc-images-too-small",
        lambda ds, n, t: _method("cpc", _tiny()),
        ConfigError,
        ["image_size=12", "at least 32 pixels"],
    ),
    (
        "cpc-patch-larger-than-image",
        lambda ds, n, t: _method("cpc", ds, patch_size=40),
        ConfigError,
        ["patch_size=40", "image_size (32)"],
    ),
    (
        "relpos-images-too-small",
        lambda ds, n, t: _method("relpos", _tiny()),
        ConfigError,
        ["image_size=12", "at least 15 pixels"],
    ),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_raises_own_error_naming_argument(case, ds, tmp_path):
    _, call, expected_type, fragments = case
    store_dir, empty = tmp_path / "store", tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SuperSelfishError) as info:
        call(ds, str(store_dir / "run"), empty)
    assert type(info.value) is expected_type, f"{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    assert files_under(store_dir) == []  # nothing written, no partial or *.tmp file


def test_enough_bad_inputs_are_covered():
    assert len(BAD_INPUTS) >= 20


def test_grayscale_rgba_16bit_are_converted_with_one_note(capsys):
    data._NOTED.clear()
    gray = torch.randint(0, 256, (4, 8, 8), dtype=torch.uint8)
    rgba = torch.randint(0, 256, (4, 8, 8, 4), dtype=torch.uint8)
    deep = np.full((4, 3, 8, 8), 200, dtype=np.uint16)  # dark 16-bit: still scaled by 65535
    out_gray, out_rgba = data.dataset(gray).images, data.dataset(rgba).images
    out_deep = data.dataset(deep).images
    assert out_gray.shape == (4, 3, 8, 8) and torch.equal(out_gray[:, 0], gray)
    assert torch.equal(out_gray[:, 2], gray)
    assert torch.equal(out_rgba, rgba.permute(0, 3, 1, 2)[:, :3])
    assert out_deep.dtype == torch.uint8 and int(out_deep.max()) == round(200 * 255 / 65535)
    from PIL import Image

    pil16 = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    assert int(data.to_uint8_image(pil16).min()) == 255
    pil_rgba = Image.fromarray(rgba[0].numpy(), "RGBA")
    assert torch.equal(data.to_uint8_image(pil_rgba), rgba[0].permute(2, 0, 1)[:3])
    data.dataset(gray)  # a second conversion prints nothing new
    err = capsys.readouterr().err
    for note in ("grayscale images are converted", "alpha channel", "16-bit images"):
        assert err.count(note) == 1, err


def test_labels_are_ignored_by_methods_that_need_none(ds, tmp_path):
    unlabeled = data.TensorImageDataset(ds.images)
    assert ds.has_labels and not unlabeled.has_labels
    runs = []
    for i, source in enumerate((ds, unlabeled)):
        sup = SimCLRSupervisor(source, seed=1, **SMALL)
        sup.supervise(
            lr=1e-3, epochs=1, batch_size=32, name=str(tmp_path / f"r{i}"), progress=False
        )
        runs.append(state_of(sup))
    assert_same_state(*runs)


# ---------------------------------------------------------------------------------------------
# 2. Checkpoints that never lie
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(ds, tmp_path_factory):
    """A 3-epoch run keeping the last 2 checkpoints and the best one (both opt-in)."""
    name = str(tmp_path_factory.mktemp("trained") / "run")
    sup = SimCLRSupervisor(ds, seed=0, **SMALL)
    history = sup.supervise(
        lr=1e-3, epochs=3, batch_size=32, name=name, progress=False, keep_last=2, keep_best=True
    )
    return name, sup, history


def test_keeps_last_n_and_best(trained):
    name, sup, history = trained
    folder = store.run_dir(name) / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "epoch_0002.pt", "epoch_0003.pt"]
    losses = [r["loss"] for r in history]
    best_epoch = losses.index(min(losses)) + 1
    assert store.read(folder / "best.pt")["epoch"] == best_epoch
    assert store.read(folder / "epoch_0002.pt")["epoch"] == 2
    assert store.checkpoint_path(name).read_bytes() == (folder / "epoch_0003.pt").read_bytes()
    assert not list(Path(name).parent.rglob("*.tmp"))


@pytest.mark.parametrize("cut", [0, 1, 100, 0.5, -1])
def test_truncated_checkpoint_is_refused(trained, tmp_path, cut):
    raw = store.checkpoint_path(trained[0]).read_bytes()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(raw[: int(len(raw) * cut) if isinstance(cut, float) else cut])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        store.read(broken)
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        SimCLRSupervisor(**SMALL).load(str(broken))


def test_flipped_byte_in_tensor_data_is_refused(trained, tmp_path):
    raw = bytearray(store.checkpoint_path(trained[0]).read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the tensor records: torch alone would load it
    broken = tmp_path / "flipped.pt"
    broken.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="CRC-32"):
        store.read(broken)


class _Exploit:
    """Unpickling this would run ``open(path, 'w')``, creating the marker file."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoint_with_pickled_callable_is_refused(trained, tmp_path):
    marker = tmp_path / "code_ran"
    payload = store.read(trained[0])
    payload["hparams"]["callback"] = _Exploit(str(marker))
    payload["optimizer_factory"] = os.system
    torch.save(payload, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="could run code"):
        store.read(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="could run code"):
        SimCLRSupervisor(**SMALL).load(str(tmp_path / "evil"))
    assert not marker.exists()


def test_checkpoint_of_another_method_or_backbone_is_refused(trained, tmp_path):
    payload = store.read(trained[0])
    payload["method"] = "byol"
    store.write(payload, tmp_path / "other")
    with pytest.raises(CheckpointError, match="written by method 'byol'"):
        SimCLRSupervisor(**SMALL).load(str(tmp_path / "other"))
    payload["method"] = "simclr"
    payload["hparams"]["backbone"] = "resnet18"
    store.write(payload, tmp_path / "other")
    with pytest.raises(CheckpointError, match="backbone='resnet18'"):
        SimCLRSupervisor(**SMALL).load(str(tmp_path / "other"))


def test_crash_while_writing_keeps_the_old_checkpoint(trained, tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    store.write(store.read(trained[0]), path)
    before = path.read_bytes()

    def dying_save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # e.g. a second Ctrl-C in the middle of a save

    monkeypatch.setattr(store.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        store.write({"format": store.FORMAT}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left


class _Failing(SimCLRSupervisor):
    """At global step ``bad_step``: a NaN loss, a crash, or an update that leaves inf weights."""

    def __init__(self, *args, bad_step: int, mode: str = "nan", **kwargs):
        super().__init__(*args, **kwargs)
        self.bad_step, self.mode = bad_step, mode

    def _forward(self, batch):
        loss = super()._forward(batch)
        if self.global_step + 1 == self.bad_step:
            if self.mode == "crash":
                raise RuntimeError("simulated crash inside a step")
            if self.mode == "nan":
                return loss * float("nan")
        return loss

    def _update(self, loss):
        super()._update(loss)
        if self.mode == "weights" and self.global_step + 1 == self.bad_step:
            with torch.no_grad():  # a finite loss, but the update left an inf weight
                self.projector[0].weight[0, 0] = float("inf")


class _Snapshot(Callback):
    """Copies the checkpoint file's bytes at ``step`` (after the epoch-1 save)."""

    def __init__(self, name: str, step: int):
        self.name, self.step, self.files = name, step, None

    def on_step_end(self, sup, step, metrics):
        if step == self.step:
            self.files = {
                p.relative_to(Path(self.name).parent): p.read_bytes()
                for p in files_under(Path(self.name).parent)
            }


@pytest.mark.parametrize(
    "mode, error, fragments",
    [
        (
            "nan",
            DivergenceError,
            [
                "Loss became nan",
                "epoch 2, step 2",
                "global step 4",
                "learning rate",
                "temperature",
                "last good checkpoint was kept",
            ],
        ),
        (
            "weights",
            DivergenceError,
            [
                "Non-finite",
                "end of epoch 2",
                "projector.0.weight",
                "learning rate",
                "temperature",
                "last good checkpoint",
            ],
        ),
        ("crash", RuntimeError, ["simulated crash"]),
    ],
)
def test_failure_in_epoch_two_keeps_epoch_one_checkpoint_intact(
    ds, tmp_path, mode, error, fragments
):
    name = str(tmp_path / "run")
    first32 = data.TensorImageDataset(ds.images[:32], ds.labels[:32])  # 2 steps per epoch
    sup = _Failing(first32, seed=0, bad_step=4, mode=mode, **SMALL)
    snapshot = _Snapshot(name, step=3)
    with pytest.raises(error) as info:
        sup.supervise(
            lr=1e-3,
            epochs=3,
            batch_size=16,
            name=name,
            progress=False,
            keep_last=5,
            callbacks=[snapshot],
        )
    assert type(info.value) is error
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    after = {p.relative_to(tmp_path): p.read_bytes() for p in files_under(tmp_path)}
    assert snapshot.files is not None and after == snapshot.files  # byte-identical, nothing new
    assert store.read(name)["epoch"] == 1 and store.read(name)["global_step"] == 2


def test_skip_nonfinite_skips_the_bad_batch(ds, tmp_path, capsys):
    first32 = data.TensorImageDataset(ds.images[:32])
    sup = _Failing(first32, seed=0, bad_step=2, mode="nan", **SMALL)
    history = sup.supervise(
        lr=1e-3,
        epochs=1,
        batch_size=16,
        name=str(tmp_path / "run"),
        progress=False,
        skip_nonfinite=True,
    )
    assert sup.global_step == 1  # the bad batch made no update
    assert "non-finite loss at epoch 1, step 2: batch skipped" in capsys.readouterr().err
    assert np.isfinite(history[0]["loss"])
    assert all(
        torch.isfinite(v).all()
        for v in store.read(str(tmp_path / "run"))["state"].values()
        if v.is_floating_point()
    )
    # Skipping cannot help once the weights themselves are broken: stop, save nothing.
    broken = _Failing(first32, seed=0, bad_step=1, mode="weights", **SMALL)
    with pytest.raises(DivergenceError, match="epoch 1, step 2"):
        broken.supervise(
            lr=1e-3,
            epochs=1,
            batch_size=16,
            name=str(tmp_path / "broken"),
            progress=False,
            skip_nonfinite=True,
        )
    assert not store.checkpoint_path(str(tmp_path / "broken")).exists()


# ---------------------------------------------------------------------------------------------
# 3. Interruptions
# ---------------------------------------------------------------------------------------------
SCRIPT = """
import sys

import torch


def train(name, resume=False, pause_at=None):
    from super_selfish import Callback, SimCLRSupervisor, data

    ds = data.materialize(data.dataset("cifar10-sample"))
    ds = ds.subset(torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:64])

    class Pause(Callback):
        def on_step_end(self, sup, step, metrics):
            if step == pause_at:  # tell the test, then wait while it sends a signal
                print(f"step {step}", flush=True)
                sys.stdin.readline()

    sup = SimCLRSupervisor(ds, seed=0, hidden_dim=128, projection_dim=32)
    sup.supervise(lr=1e-3, epochs=2, batch_size=16, name=name, progress=False, keep_last=3,
                  lr_scheduler="cosine", warmup_epochs=0.5, weight_decay=1e-4,
                  callbacks=[Pause()], pretrained=resume)
    return sup


if __name__ == "__main__":
    torch.set_num_threads(1)
    sup = train(sys.argv[1], resume=sys.argv[3] == "resume", pause_at=int(sys.argv[2]))
    print("interrupted" if sup.interrupted else "finished", flush=True)
"""


def _start(script: Path, name: Path, pause_at: int = 0, mode: str = "fresh") -> subprocess.Popen:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    return subprocess.Popen(
        [sys.executable, str(script), str(name), str(pause_at), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(f"{name}.{mode}.log", "w"),
        text=True,
        env=env,
        cwd=REPO,
    )


def _finish(proc: subprocess.Popen, log: str) -> str:
    out = proc.stdout.read()
    assert proc.wait(timeout=300) == 0, Path(log).read_text()[-3000:]
    return out.strip()


def _wait_for(proc: subprocess.Popen, marker: str, log: str) -> None:
    for line in proc.stdout:
        if line.strip() == marker:
            return
    proc.wait()
    pytest.fail(f"no {marker!r} from the training process: {Path(log).read_text()[-3000:]}")


@pytest.mark.slow
def test_sigterm_resumes_bit_identical_and_sigkill_keeps_last_checkpoint(tmp_path):
    # Every run is a separate process (one thread each), so all use the same code and settings.
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    term_name, kill_name, ref_name = tmp_path / "term", tmp_path / "kill", tmp_path / "ref"
    term = _start(script, term_name, pause_at=2)  # 4 steps per epoch: stop inside epoch 1
    kill = _start(script, kill_name, pause_at=5)  # the first step after epoch 1 was saved
    reference = _start(script, ref_name)  # uninterrupted
    try:
        _check_interrupted_runs(script, tmp_path, term, kill, reference)
    finally:
        for proc in (term, kill, reference):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _check_interrupted_runs(script, tmp_path, term, kill, reference):
    term_name, kill_name, ref_name = tmp_path / "term", tmp_path / "kill", tmp_path / "ref"
    _wait_for(term, "step 2", f"{term_name}.fresh.log")
    term.send_signal(signal.SIGTERM)
    term.stdin.write("\n")
    term.stdin.close()
    assert _finish(term, f"{term_name}.fresh.log") == "interrupted"  # and exit status 0
    log = Path(f"{term_name}.fresh.log").read_text()
    assert "stopped by SIGTERM at epoch 1, step 2" in log
    saved = store.read(term_name)
    assert (saved["epoch"], saved["global_step"], saved["step_in_epoch"]) == (0, 2, 2)
    assert len(saved["epoch_losses"]) == 2 and "optimizer" in saved and "rng" in saved

    resumed = _start(script, term_name, mode="resume")
    try:
        _wait_for(kill, "step 5", f"{kill_name}.fresh.log")
        kill.send_signal(signal.SIGKILL)
        assert kill.wait(timeout=60) == -signal.SIGKILL
        assert _finish(reference, f"{ref_name}.fresh.log") == "finished"
        assert _finish(resumed, f"{term_name}.resume.log") == "finished"
    finally:
        if resumed.poll() is None:
            resumed.kill()
            resumed.wait()

    final, expected = store.read(term_name), store.read(ref_name)
    assert final["global_step"] == expected["global_step"] == 8
    assert_same_state(final["state"], expected["state"])  # bit-identical weights and buffers
    assert_same_state(final["optimizer"]["state"][0], expected["optimizer"]["state"][0])
    assert [r["loss"] for r in final["history"]] == [r["loss"] for r in expected["history"]]

    last_good = store.read(kill_name)  # SIGKILL: the epoch-1 checkpoint is intact
    assert last_good["epoch"] == 1
    epoch_one = store.read(store.run_dir(ref_name) / "checkpoints" / "epoch_0001.pt")
    assert_same_state(last_good["state"], epoch_one["state"])
    loaded = SimCLRSupervisor(**SMALL).load(str(kill_name))
    assert loaded.epoch == 1 and loaded.global_step == 4
    assert not list(tmp_path.rglob("*.tmp"))


class _WithMomentum(SimCLRSupervisor):
    """SimCLR plus an EMA copy of the projector and a queue of its keys, used in the loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **SMALL, **kwargs)
        self.target = frozen_copy(self.projector)
        self.queue = Queue(48, 32)

    def _forward(self, batch):
        view1, view2 = self.augment_views(batch.images)[:2]
        features = torch.cat(self.encode_views([view1, view2]))
        z1, z2 = self.projector(features).chunk(2)
        with torch.no_grad():
            self._keys = nn.functional.normalize(self.target(features[: len(z1)]), dim=1)
        negatives = self.queue.valid()  # empty at the first step
        push_away = (nn.functional.normalize(z1, dim=1) @ negatives.t()).sum() / (
            len(z1) * max(1, len(negatives))
        )
        return self.criterion(z1, z2) + 0.1 * push_away

    def _update(self, loss):
        super()._update(loss)
        ema_update(self.target, self.projector, 0.9)
        self.queue.push(self._keys)


class _Interrupt(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, sup, step, metrics):
        if step == self.step:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of the step


def test_ctrl_c_then_resume_restores_ema_queue_optimizer_scheduler_rng(ds, tmp_path):
    options = dict(
        lr=2e-3,
        epochs=2,
        batch_size=16,
        progress=False,
        optimizer=torch.optim.AdamW,
        lr_scheduler="cosine",
        warmup_epochs=1,
    )
    ds = data.TensorImageDataset(ds.images[:48])  # 3 steps per epoch
    reference = _WithMomentum(ds, seed=5)
    reference.supervise(name=str(tmp_path / "ref"), **options)

    name = str(tmp_path / "run")
    first = _WithMomentum(ds, seed=5)
    first.supervise(name=name, callbacks=[_Interrupt(step=5)], **options)  # epoch 2, step 2
    assert first.interrupted and first.global_step == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    saved = store.read(name)
    assert (saved["epoch"], saved["step_in_epoch"]) == (1, 2)
    assert torch.equal(saved["state"]["queue.items"], first.queue.items)

    before = store.checkpoint_path(name).read_bytes()
    with pytest.raises(ConfigError, match="batch_size=8 .* interrupted at step 2 .* batch_size=16"):
        _WithMomentum(ds, seed=5).supervise(name=name, resume=True, **{**options, "batch_size": 8})
    assert store.checkpoint_path(name).read_bytes() == before

    second = _WithMomentum(ds, seed=5)
    second.supervise(name=name, resume=True, **options)
    assert not second.interrupted and second.global_step == 6
    assert_same_state(state_of(second), state_of(reference))
    assert second.optimizer.param_groups[0]["lr"] == reference.optimizer.param_groups[0]["lr"]
    assert [r["loss"] for r in second.history] == [r["loss"] for r in reference.history]


# ---------------------------------------------------------------------------------------------
# 5. Reproducibility
# ---------------------------------------------------------------------------------------------
def test_same_seed_gives_identical_weights_and_another_seed_does_not(trained, ds, tmp_path):
    _, first, history = trained
    again = SimCLRSupervisor(ds, seed=0, **SMALL)
    again_history = again.supervise(
        lr=1e-3, epochs=3, batch_size=32, name=str(tmp_path / "a"), progress=False, keep_last=2
    )
    assert_same_state(state_of(again), state_of(first))
    assert [r["loss"] for r in again_history] == [r["loss"] for r in history]

    other = SimCLRSupervisor(ds, seed=1, **SMALL)
    other.supervise(lr=1e-3, epochs=1, batch_size=32, name=str(tmp_path / "b"), progress=False)
    assert not torch.equal(other.backbone.body[0][0].weight, first.backbone.body[0][0].weight)
