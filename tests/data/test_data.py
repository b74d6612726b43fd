"""Datasets: the bundled CIFAR-10 sample, the conversion of arrays and tensors, image folders
(splits, hidden folders, dropped and corrupt images)."""

from __future__ import annotations

import pytest
import torch
from toys import sample_subset, write_images

from super_selfish import data
from super_selfish.errors import ConfigError, DataError, UnknownNameError


@pytest.fixture(scope="module")
def ds() -> data.TensorImageDataset:
    return sample_subset(16)


def test_sample_dataset_is_real_and_labelled():
    train, test = data.dataset("cifar10-sample", "train"), data.dataset("cifar10-sample", "test")
    assert (len(train), len(test)) == (5000, 1000)
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (3, 32, 32)
    assert torch.bincount(train.labels).tolist() == [500] * 10
    assert train.classes[0] == "airplane" and train.images.float().std() > 40


def test_dataset_inputs_are_converted():
    arr = torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8).numpy()
    ds = data.dataset(arr)
    assert ds.images.shape == (5, 3, 16, 16) and not ds.has_labels
    gray_float = torch.rand(4, 1, 10, 10)
    ds = data.dataset((gray_float, torch.arange(4)), size=12)
    assert ds.images.shape == (4, 3, 12, 12) and ds.has_labels
    assert torch.equal(ds.images[:, 0], ds.images[:, 1])


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


# --------------------------------------------------------------------- 12. bad files
def test_corrupt_image_is_named_before_training_or_skipped(ds, tmp_path, capsys):
    folder = tmp_path / "imgs" / "any"
    write_images(folder, ds.images[:6], ext=".jpg")
    raw = (folder / "3.jpg").read_bytes()
    (folder / "3.jpg").write_bytes(raw[: len(raw) // 2])  # a truncated download
    (folder / "5.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"2 of 7 images.*3\.jpg.*5\.png.*skip_bad_images=True"):
        data.dataset(str(tmp_path / "imgs"))
    kept = data.dataset(str(tmp_path / "imgs"), skip_bad_images=True)
    assert len(kept) == 5 and "left out 2 of 7 images" in capsys.readouterr().err
    with pytest.raises(DataError, match="no such folder: './no/such/images'"):
        data.dataset("./no/such/images")
    with pytest.raises(UnknownNameError, match="Did you mean 'cifar10'.*no such folder"):
        data.dataset("cifar-10")
