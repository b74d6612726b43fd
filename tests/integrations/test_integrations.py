"""The ecosystem: optional extras, timm backbones, Hugging Face / torchvision / WebDataset data,
loading (workers, resize, device decoding), exported backbones, 1- and 4-channel images,
Lightning and Weights & Biases. Every integration runs with the real library."""

from __future__ import annotations

import glob
import importlib
import io
import os
import struct
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from super_selfish import (
    BYOLSupervisor,
    DINOSupervisor,
    MAESupervisor,
    SimCLRSupervisor,
    Supervisor,
    backbones,
    data,
    evaluate,
)
from super_selfish.errors import DataError
from super_selfish.extras import MissingExtraError


def tiny_body(in_channels: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1)
    )


@pytest.fixture(scope="module")
def sample():
    """32 real CIFAR-10 images (a seeded random subset: the sample is sorted by class)."""
    full = data.materialize(data.dataset("cifar10-sample"))
    return full.subset(torch.randperm(len(full), generator=torch.Generator().manual_seed(0))[:32])


def moved(before: dict, after: nn.Module, prefix: str) -> bool:
    return any(
        not torch.equal(before[k], v)
        for k, v in after.state_dict().items()
        if k.startswith(prefix) and v.is_floating_point()
    )


def snapshot(module: nn.Module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------------ extras
def test_a_missing_extra_names_the_extra_to_install(monkeypatch, tmp_path):
    import datasets as hf

    table = hf.Dataset.from_dict({"image": [np.zeros((4, 4, 3), np.uint8)]})
    for module in ("timm", "datasets", "webdataset", "wandb", "onnxscript", "lightning"):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delitem(sys.modules, "super_selfish.lightning", raising=False)
    checks = [
        ("timm", lambda: backbones.build("timm/resnet18")),
        ("hf", lambda: data.dataset(table)),
        ("webdataset", lambda: data.dataset(str(tmp_path / "train-{000..001}.tar"))),
        ("wandb", lambda: importlib.import_module("super_selfish.monitors").WandbLogger()),
        (
            "onnx",
            lambda: SimCLRSupervisor(backbone=tiny_body()).export_backbone(
                tmp_path / "b.onnx", "onnx"
            ),
        ),
        ("lightning", lambda: importlib.import_module("super_selfish.lightning")),
    ]
    for extra, use in checks:
        with pytest.raises(MissingExtraError, match=rf'pip install "super_selfish\[{extra}\]"'):
            use()


# ------------------------------------------------------------------------------ timm
def test_timm_cnn_backbone_drops_the_classifier_infers_features_and_loads_local_weights(
    sample, tmp_path
):
    import timm

    reference = timm.create_model("test_efficientnet", num_classes=10)  # with a classifier
    torch.save(reference.state_dict(), tmp_path / "weights.pth")
    backbone = backbones.from_timm(
        "test_efficientnet", weights=tmp_path / "weights.pth", image_size=32
    )
    model = backbone.body.model
    assert backbone.name == "timm/test_efficientnet"
    assert model.num_classes == 0 and isinstance(model.get_classifier(), nn.Identity)
    assert backbone.feature_dim == model.num_features == reference.num_features
    loaded = model.state_dict()
    assert all(
        torch.equal(loaded[k], v)
        for k, v in reference.state_dict().items()
        if not k.startswith("classifier")
    )
    images = sample.images[:4]
    with torch.no_grad():  # features are timm's own pooled, classifier-free features
        expected = reference.eval().forward_head(
            reference.forward_features(backbone.eval().prepare(images)), pre_logits=True
        )
        assert torch.allclose(backbone(images), expected, atol=1e-5)
    assert backbone.feature_map(images).shape[:2] == (4, backbone.map_channels)
    backbones.save(backbone, tmp_path / "backbone.pt")  # a timm name rebuilds from the file
    with torch.no_grad():
        assert torch.equal(backbones.load(tmp_path / "backbone.pt")(images), backbone(images))

    grouped = backbones.build("timm/test_efficientnet", norm="group")  # BatchNormAct ->
    assert not any(isinstance(m, nn.BatchNorm2d) for m in grouped.modules())  # GroupNorm + act
    assert sum(isinstance(m, nn.GroupNorm) for m in grouped.modules()) == sum(
        isinstance(m, nn.BatchNorm2d) for m in backbone.modules()
    )
    # (the README's timm example trains a timm CNN and a timm ViT with MAE)


def test_timm_vit_takes_image_and_patch_size_and_trains_with_mae_and_dino(sample):
    name = "timm/test_vit?depth=2&patch_size=4"
    mae = MAESupervisor(sample, name, decoder_dim=32, decoder_depth=1, seed=0)
    vit = mae.vit
    assert (vit.patch_size, vit.grid(sample.images[:1].float())) == (4, (8, 8))
    assert vit.model.patch_embed.img_size == (32, 32)
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        everything = vit.encode_visible(images)
        assert torch.allclose(
            everything[:, 0], vit.model.forward_features(images)[:, 0], atol=1e-5
        )  # all patches: timm's own class token
        visible = vit.encode_visible(images, torch.tensor([[0, 5, 63], [1, 2, 3]]))
    assert visible.shape == (2, 1 + 3, vit.dim)  # class token, then the kept patches
    loss = mae(data.Batch(sample.images[:4], sample.labels[:4], torch.arange(4)))
    assert torch.isfinite(loss)  # (the README's timm example trains MAE on a timm ViT)
    rebuilt = backbones.build(mae.backbone.name, probe_size=32)  # the name rebuilds it
    assert rebuilt.body.patch_size == 4

    from super_selfish import augment

    dino = DINOSupervisor(
        sample.subset(torch.arange(16)),
        name,
        out_dim=64,
        hidden_dim=32,
        bottleneck_dim=16,
        augment=augment.build("dino", 32, n_local=2),
        seed=0,
    )
    assert {tuple(s) for s in dino.views.sizes} == {(32, 32), (14, 14)}  # 14: not a multiple
    before = snapshot(dino)
    dino.supervise(epochs=1, batch_size=8, progress=False, save=False)  # EMA from step 2
    assert moved(before, dino, "backbone.") and moved(before, dino, "momentum_backbone.")


# ------------------------------------------------------------------------------ data sources
def test_hugging_face_dataset_columns_by_type_or_by_name(tmp_path):
    import datasets as hf

    images = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    features = hf.Features(
        {
            "id": hf.Value("int64"),
            "picture": hf.Image(),
            "kind": hf.ClassLabel(names=["cat", "dog"]),
        }
    )
    table = hf.Dataset.from_dict(
        {"id": list(range(6)), "picture": list(images), "kind": [0, 1, 1, 0, 1, 0]},
        features=features,
    )
    ds = data.dataset(hf.DatasetDict({"train": table, "test": table.select([0])}))
    assert (ds.image_column, ds.label_column, ds.classes) == ("picture", "kind", ["cat", "dog"])
    assert len(ds) == 6 and ds.has_labels
    image, label = ds[2]
    assert torch.equal(image, torch.from_numpy(images[2]).permute(2, 0, 1)) and label == 1
    assert (
        len(data.dataset(hf.DatasetDict({"train": table, "test": table.select([0])}), "test")) == 1
    )
    plain = hf.Dataset.from_dict({"img": list(images[:, :, :, 0]), "target": [5, 4, 3, 2, 1, 0]})
    named = data.dataset(plain, image_column="img", channels=1)  # label: an int "target"
    assert named.label_column == "target" and named[1][1] == 4
    assert torch.equal(named[1][0], torch.from_numpy(images[1, None, :, :, 0]))
    arrays = data.dataset(hf.Dataset.from_dict({"pixels": list(images)}))  # arrays, by type
    assert arrays.image_column == "pixels" and not arrays.has_labels
    assert torch.equal(arrays[3][0], torch.from_numpy(images[3]).permute(2, 0, 1))
    with pytest.raises(DataError, match="image_column='picturez'.*'picture'"):
        data.dataset(table, image_column="picturez")
    batch = next(iter(data.BatchLoader(ds, 3, generator=torch.Generator().manual_seed(0))))
    assert torch.equal(batch.images, torch.from_numpy(images[batch.index]).permute(0, 3, 1, 2))
    # (the README's Hugging Face example trains on a datasets.Dataset)


def _write_idx(path, array: np.ndarray) -> None:
    kind = {1: 0x08}[array.itemsize]
    with open(path, "wb") as handle:
        handle.write(struct.pack(">HBB", 0, kind, array.ndim))
        handle.write(struct.pack(f">{array.ndim}I", *array.shape))
        handle.write(array.tobytes())


def test_torchvision_datasets_in_memory_at_once_and_item_by_item(tmp_path):
    import torchvision

    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    mnist = torchvision.datasets.MNIST(str(tmp_path), train=True, download=False)
    ds = data.dataset(mnist, channels=1)
    assert isinstance(ds, data.TensorImageDataset)  # read from .data at once, no PIL
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
    assert ds.labels.tolist() == [3, 1, 4, 1, 5] and ds.classes[3].startswith("3")
    fake = torchvision.datasets.FakeData(
        size=4,
        image_size=(3, 12, 12),
        num_classes=2,
        transform=torchvision.transforms.PILToTensor(),
    )
    per_item = data.dataset(fake)
    assert isinstance(per_item, data.ConvertedDataset) and per_item[0][0].shape == (3, 12, 12)
    assert torch.equal(per_item[1][0], fake[1][0])


def _write_shards(folder, n_shards: int, per_shard: int, size: int = 12) -> np.ndarray:
    import webdataset as wds

    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (n_shards * per_shard, size, size, 3), dtype=np.uint8)
    for shard in range(n_shards):
        with wds.TarWriter(str(folder / f"train-{shard:03d}.tar")) as writer:
            for i in range(shard * per_shard, (shard + 1) * per_shard):
                png = io.BytesIO()
                Image.fromarray(images[i]).save(png, "PNG")
                writer.write(
                    {"__key__": f"{i:06d}", "png": png.getvalue(), "cls": str(i % 3).encode()}
                )
    return images


class IndexRecorder(Supervisor):
    """Records which samples each step gets, and checks they are the right pixels."""

    default_augment = None
    method = "index-recorder"

    def __init__(self, dataset=None, **kwargs):
        super().__init__(dataset, tiny_body(), **kwargs)
        self.head = nn.Linear(self.backbone.feature_dim, 1)
        self.seen: list = []

    def _forward(self, batch):
        self.seen.append((batch.index.tolist(), batch.images.clone()))
        return self.head(self.backbone(batch.images)).pow(2).mean()


def test_webdataset_shards_stream_each_sample_once_per_epoch_split_by_process_and_worker(tmp_path):
    images = _write_shards(tmp_path, n_shards=4, per_shard=6)
    ds = data.dataset(str(tmp_path / "train-{000..003}.tar"))
    assert len(ds) == 24 and ds.streaming and ds.has_labels and ds.image_key == "png"
    image, label = ds[13]  # random access by byte offset
    assert torch.equal(image, torch.from_numpy(images[13]).permute(2, 0, 1)) and label == 1

    # 2 processes x 2 workers = 4 readers of one shard each: together, every sample once
    taken = [
        index
        for reader in range(4)
        for index, _ in __import__("itertools").islice(ds.samples(reader, 4, seed=5), 6)
    ]
    assert sorted(taken) == list(range(24))
    per_rank = []
    for rank in range(2):  # what each process's stream yields (no workers here)
        stream = ds.stream(batch_size=4)
        stream.rank, stream.world = rank, 2
        stream.start_epoch(7)
        per_rank.append([index for index, _ in stream])
    assert [len(p) for p in per_rank] == [12, 12] and sorted(sum(per_rank, [])) == list(range(24))

    sup = IndexRecorder(str(tmp_path / "train-{000..003}.tar"), seed=0)
    sup.supervise(epochs=2, batch_size=4, num_workers=2, progress=False, save=False)
    epochs = [sup.seen[:6], sup.seen[6:]]
    assert len(sup.seen) == 12
    for steps in epochs:
        assert sorted(i for indices, _ in steps for i in indices) == list(range(24))
    assert [i for i, _ in epochs[0]] != [i for i, _ in epochs[1]]  # a new order each epoch
    for indices, batch in sup.seen:  # an index always names the same image
        assert torch.equal(batch, torch.from_numpy(images[indices]).permute(0, 3, 1, 2))


# ------------------------------------------------------------------------------ loading
class Pids(torch.utils.data.Dataset):
    """Labels are the id of the process that read the item."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return torch.zeros(3, 4, 4, dtype=torch.uint8), os.getpid()


def test_loader_workers_persist_across_epochs_and_resize_can_keep_the_aspect_ratio(tmp_path):
    loader = data.BatchLoader(data.dataset(Pids()), 4, generator=torch.Generator())
    assert loader.num_workers == data.default_num_workers() >= 1
    pids = [set(batch.labels.tolist()) for _ in range(2) for batch in loader]
    loader.close()
    assert os.getpid() not in set.union(*pids) and len(set.union(*pids)) == loader.num_workers
    assert data.BatchLoader(data.dataset(np.zeros((8, 4, 4), np.uint8)), 4).num_workers == 0

    stripes = np.zeros((20, 60, 3), np.uint8)  # red | green | blue thirds
    stripes[:, :20, 0] = stripes[:, 20:40, 1] = stripes[:, 40:, 2] = 255
    Image.fromarray(stripes).save(tmp_path / "wide.png")
    cropped = data.dataset(str(tmp_path), size=10, resize="crop")[0][0]  # PIL path
    squashed = data.dataset(str(tmp_path), size=10)[0][0]
    as_tensor = data.resize_uint8(torch.from_numpy(stripes).permute(2, 0, 1)[None], 10, "crop")
    for crop in (cropped, as_tensor[0]):  # the centre square: green only (inside the edges)
        assert crop[1, :, 1:-1].min() == 255 and crop[[0, 2], :, 1:-1].max() == 0
    assert squashed[0, :, 0].min() == 255 and squashed[2, :, -1].min() == 255


def _jpeg_folder(folder, n: int = 6) -> None:
    rng = np.random.default_rng(3)
    for i in range(n):
        smooth = np.kron(rng.integers(0, 256, (5, 6, 3)), np.ones((4, 4, 1))).astype(np.uint8)
        Image.fromarray(smooth).save(folder / f"{i}.jpg", quality=95)


def test_jpeg_decoding_for_the_device_matches_the_workers(tmp_path):
    _jpeg_folder(tmp_path)
    on_cpu = data.dataset(str(tmp_path), size=16)
    deferred = data.dataset(str(tmp_path), size=16, decode="device")
    loader = data.BatchLoader(deferred, 6, shuffle=False, num_workers=0)
    encoded = next(iter(loader))
    assert type(encoded).__name__ == "EncodedBatch" and len(encoded.images) == 6
    decoded = encoded.to("cpu").images
    expected = torch.stack([on_cpu[i][0] for i in range(6)])
    assert decoded.shape == expected.shape == (6, 3, 16, 16)
    assert (decoded.float() - expected.float()).abs().mean() < 3  # two decoders, two resizers


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_jpeg_decoding_on_cuda_feeds_training(tmp_path):
    _jpeg_folder(tmp_path, 8)
    sup = IndexRecorder(data.dataset(str(tmp_path), size=16, decode="device"), seed=0)
    sup.supervise(epochs=1, batch_size=4, device="cuda", progress=False, save=False)
    on_cpu = data.dataset(str(tmp_path), size=16)
    for indices, batch in sup.seen:
        assert batch.device.type == "cuda"
        expected = torch.stack([on_cpu[i][0] for i in indices]).float()
        assert (batch.cpu().float() - expected).abs().mean() < 3


# ------------------------------------------------------------------------------ export
class BatchSizeTrap(nn.Module):
    """Python control flow on the batch size: tracing bakes in one branch."""

    def forward(self, x):
        return x.flatten(1)[:, :8] * (2.0 if x.shape[0] == 2 else 1.0)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_backbones_reload_and_match_the_live_one(sample, tmp_path, fmt):
    sup = SimCLRSupervisor(sample, backbone=tiny_body(), hidden_dim=16, seed=0)
    result = sup.export_backbone(tmp_path / f"backbone.{fmt}", fmt)
    assert result.max_abs_diff < 1e-4 and result.feature_dim == sup.backbone.feature_dim
    assert sup.backbone.training  # the live backbone's mode is untouched
    images = sample.images[:5].float() / 255
    live = sup.get_backbone().eval()(images).detach()
    if fmt == "torchscript":
        exported = torch.jit.load(result.path)(images)
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(result.path, providers=["CPUExecutionProvider"])
        exported = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    assert torch.allclose(exported, live, atol=1e-4)
    if fmt == "torchscript":
        from super_selfish.export import ExportError

        trap = Supervisor(sample, backbone=BatchSizeTrap(), augment="none")
        with pytest.raises(ExportError, match="does not reproduce"):
            trap.export_backbone(tmp_path / "trap.pt")
        assert not (tmp_path / "trap.pt").exists()


# ------------------------------------------------------------------------------ channels
def test_grayscale_and_four_channel_images_train_without_becoming_rgb(sample, capsys):
    data._NOTED.discard("colour-jitter")  # noted once per process: maybe by another test
    gray = data.dataset(sample, channels=1)
    luma = (sample.images.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    assert torch.equal(gray.images[:, 0], luma.round().byte())
    sup = SimCLRSupervisor(sample, backbone=tiny_body(1), in_channels=1, hidden_dim=16, seed=0)
    assert sup.dataset.channels == 1 and sup.backbone.in_channels == 1
    views = sup.augment_views(sup.dataset.images[:8])
    assert all(v.shape[1] == 1 for v in views)
    before = snapshot(sup)
    sup.supervise(epochs=1, batch_size=16, progress=False, save=False)
    assert moved(before, sup, "backbone.")
    assert "saturation and hue are skipped" in capsys.readouterr().err
    rgb = sample.subset(torch.arange(16))  # evaluation brings RGB data to the backbone's 1
    assert 0 <= evaluate.knn_accuracy(sup.get_backbone(), rgb, rgb, k=5) <= 1

    from super_selfish.augment import ColorJitter, Grayscale

    x = torch.rand(2, 1, 8, 8)
    params = {
        "brightness": torch.tensor([1.2, 0.9]),
        "contrast": torch.tensor([0.5, 1.5]),
        "saturation": torch.ones(2),
        "hue": torch.zeros(2),
    }
    b, c = params["brightness"].view(2, 1, 1, 1), params["contrast"].view(2, 1, 1, 1)
    expected = (b * c * x + (1 - c) * b * x.mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
    assert torch.allclose(ColorJitter().transform(x, params, (8, 8)), expected)
    assert torch.equal(Grayscale().transform(x, {}, (8, 8)), x)

    rgbn = np.random.default_rng(4).integers(0, 256, (16, 16, 16, 4), dtype=np.uint8)
    four = SimCLRSupervisor(rgbn, backbone=tiny_body(4), in_channels=4, hidden_dim=16, seed=0)
    assert torch.equal(four.dataset.images, torch.from_numpy(rgbn).permute(0, 3, 1, 2))
    history = four.supervise(epochs=1, batch_size=8, progress=False, save=False)
    assert np.isfinite(history[0]["loss"])


# ------------------------------------------------------------------------------ Lightning
@pytest.mark.parametrize("method", [SimCLRSupervisor, BYOLSupervisor])
def test_lightning_trains_to_the_same_weights_as_supervise(sample, method):
    import lightning

    from super_selfish.lightning import SupervisorModule

    images = sample.subset(torch.arange(16))
    options = dict(backbone=tiny_body(), hidden_dim=32, seed=0)
    reference = method(images, **options)
    initial = snapshot(reference)
    reference.supervise(
        epochs=2, batch_size=8, lr_scheduler="cosine", warmup_epochs=0.5, progress=False, save=False
    )
    options["backbone"] = tiny_body()
    sup = method(images, **options)
    trainer = lightning.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(SupervisorModule(sup, batch_size=8, lr_scheduler="cosine", warmup_epochs=0.5))
    assert trainer.global_step == sup.global_step == reference.global_step == 4
    assert moved(initial, reference, "backbone.")
    for key, value in reference.state_dict().items():  # EMA copies and BN buffers included
        assert torch.allclose(sup.state_dict()[key].float(), value.float(), atol=1e-6), key
    assert [r["loss"] for r in sup.history] == pytest.approx([r["loss"] for r in reference.history])


# ------------------------------------------------------------------------------ W&B
def read_wandb_records(folder) -> list:
    """The records of an offline W&B run file, once W&B's writer process has written its
    last ("exit") record."""
    import time

    for _ in range(300):
        records = _wandb_records(
            glob.glob(f"{folder}/**/offline-run-*/run-*.wandb", recursive=True)[0]
        )
        if records and records[-1].WhichOneof("record_type") == "exit":
            return records
        time.sleep(0.1)
    raise AssertionError(f"no complete W&B run file under {folder}")


def _wandb_records(path) -> list:
    """Parse a W&B run file: a LevelDB-style log of protobuf records."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw = open(path, "rb").read()
    block, position, records, partial = 32768, 7, [], b""  # 7-byte ":W&B" file header
    while position + 7 <= len(raw):
        if block - position % block < 7:  # block trailer
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[position : position + 7])
        if length == 0 and kind == 0:
            break
        partial += raw[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            records.append(pb.Record.FromString(partial))
            partial = b""
    return records


def test_wandb_logger_writes_scalars_the_augmentation_grid_and_the_config(
    sample, tmp_path, monkeypatch
):
    import json

    from super_selfish.monitors import WandbLogger

    monkeypatch.setenv("WANDB_SILENT", "true")
    sup = SimCLRSupervisor(sample, backbone=tiny_body(), hidden_dim=16, seed=0)
    logger = WandbLogger(mode="offline", every_n_steps=1)
    history = sup.supervise(
        epochs=1, batch_size=16, progress=False, name=str(tmp_path / "run"), callbacks=[logger]
    )
    records = read_wandb_records(tmp_path / "run")
    rows = [
        {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in r.history.item
        }
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    losses = [row["step/loss"] for row in rows if "step/loss" in row]
    assert [row["_step"] for row in rows if "step/loss" in row] == [1, 2]
    epoch_row = next(row for row in rows if "epoch/loss" in row)
    assert epoch_row["epoch"] == 1 and epoch_row["epoch/loss"] == pytest.approx(
        history[0]["loss"]
    ) == pytest.approx(sum(losses) / 2)
    image = next(row for row in rows if "augmentations/_type" in row)
    assert image["augmentations/_type"] == "image-file" and image["_step"] == 0
    assert glob.glob(str(tmp_path / "run" / "**" / "augmentations_*.png"), recursive=True)
    config = {
        u.key: json.loads(u.value_json)
        for r in records
        if r.WhichOneof("record_type") == "run"
        for u in r.run.config.update
    }
    assert config["method"] == "simclr" and config["batch_size"] == 16
    assert config["temperature"] == 0.5 and config["lr"] == sup.base_lr
