"""Pretext methods: RotNet, Jigsaw (CFN), relative patch position, Exemplar; their labels
and tiling helpers (the semi-hard triplet loss: tests/losses)."""

from __future__ import annotations

import math

import pytest
import torch
from toys import sample_subset

from super_selfish import (
    ExemplarSupervisor,
    JigsawSupervisor,
    RelativePositionSupervisor,
    RotateNetSupervisor,
    data,
    jigsaw,
    methods,
)
from super_selfish.errors import ConfigError
from super_selfish.methods.relpos import OFFSETS
from super_selfish.methods.rotnet import rotate_batch

# Minimum pairwise Hamming distance of the default 3x3 set (100 permutations, seed 0), as
# documented in JigsawSupervisor.
MIN_HAMMING_3X3_100 = 6

METHODS = {
    "rotnet": (RotateNetSupervisor, {}),
    "jigsaw": (JigsawSupervisor, {}),
    "relpos": (RelativePositionSupervisor, {}),
    "exemplar": (ExemplarSupervisor, {"loss": "classification"}),
    "exemplar-triplet": (ExemplarSupervisor, {"loss": "triplet"}),
}


@pytest.fixture(scope="module")
def subset64() -> data.TensorImageDataset:
    return sample_subset(64)


def trainable(sup) -> dict:
    return {k: p.detach().clone() for k, p in sup.named_parameters() if p.requires_grad}


def random_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8)


# ---------------------------------------------------------------------- training, building
@pytest.mark.parametrize("key", list(METHODS))
def test_registered_under_cli_name(key):
    cls, _ = METHODS[key]
    assert methods.get(key.split("-")[0]) is cls


@pytest.mark.parametrize("key", list(METHODS))
def test_one_epoch_moves_every_trainable_part(key, subset64, tmp_path):
    cls, kwargs = METHODS[key]
    torch.manual_seed(0)
    sup = cls(subset64, seed=0, **kwargs)
    before = trainable(sup)
    parts = {name.split(".")[0] for name in before}
    assert "backbone" in parts and len(parts) >= 2  # backbone plus its head
    history = sup.supervise(
        lr=1e-3, epochs=1, batch_size=32, name=str(tmp_path / "run"), progress=False
    )
    assert len(history) == 1 and math.isfinite(history[0]["loss"])
    after = dict(sup.named_parameters())
    frozen = [k for k, v in before.items() if torch.equal(v, after[k].detach())]
    assert frozen == []


@pytest.mark.parametrize("size", [32, 96])
@pytest.mark.parametrize("key", list(METHODS))
def test_builds_and_runs_at_any_size_small_convnet(key, size):
    cls, kwargs = METHODS[key]
    torch.manual_seed(0)
    sup = cls(data.dataset(random_images(8, size)), seed=0, **kwargs)
    assert sup.image_size == size
    loss = sup(data.Batch(random_images(8, size, 1), torch.full((8,), -1), torch.arange(8)))
    assert loss.ndim == 0 and torch.isfinite(loss)
    if key == "jigsaw":
        grid, n_perms = (2, 24) if size < 64 else (3, 100)
        assert (sup.grid, sup.permutations.shape) == (grid, (n_perms, grid * grid))
        assert sup.tile_size < sup.cell  # the crop can move inside its cell
        assert sup.classifier.dims[0] == grid * grid * sup.backbone.feature_dim
        assert sup.classifier.dims[-1] == n_perms


# Exemplar's classification variant shares the triplet variant's backbone path; its head at
# 96 px is covered by the small-convnet test above.
@pytest.mark.parametrize("key", [k for k in METHODS if k != "exemplar"])
def test_resnet18_96px_one_step(key, tmp_path):
    cls, kwargs = METHODS[key]
    torch.manual_seed(0)
    sup = cls(data.dataset(random_images(8, 96)), backbone="resnet18", seed=0, **kwargs)
    before = trainable(sup)
    history = sup.supervise(
        lr=1e-3, epochs=1, batch_size=8, name=str(tmp_path / "run"), progress=False, save=False
    )
    assert math.isfinite(history[0]["loss"])
    after = dict(sup.named_parameters())
    for part in {k.split(".")[0] for k in before}:
        assert any(
            not torch.equal(v, after[k].detach())
            for k, v in before.items()
            if k.startswith(part + ".")
        ), part


# ---------------------------------------------------------------------- pretext labels
def test_rotation_labels_undo_the_rotation():
    images = torch.rand(5, 3, 16, 16)
    rotated, labels = rotate_batch(images)
    assert rotated.shape == (20, 3, 16, 16)
    assert torch.bincount(labels).tolist() == [5, 5, 5, 5]
    for j in range(20):
        restored = torch.rot90(rotated[j], -int(labels[j]), dims=(-2, -1))
        assert torch.equal(restored, images[j % 5])
        if labels[j] != 0:
            assert not torch.equal(rotated[j], images[j % 5])
    # Label 1 is 90 degrees counter-clockwise: the top-left corner goes to the bottom-left.
    dot = torch.zeros(1, 1, 4, 4)
    dot[0, 0, 0, 0] = 1
    turned, _ = rotate_batch(dot)
    assert turned[1, 0, 3, 0] == 1 and turned[2, 0, 3, 3] == 1 and turned[3, 0, 0, 3] == 1


def test_cut_tiles_crops_inside_cells_and_the_crop_moves():
    images = torch.rand(6, 3, 32, 32)
    cell, tile = jigsaw.tile_geometry(32, 2)
    gen = torch.Generator().manual_seed(0)
    tiles, offsets = jigsaw.cut_tiles(images, 2, tile, generator=gen, return_offsets=True)
    assert tiles.shape == (6, 4, 3, tile, tile) and tiles.dtype == torch.float32
    for n in range(6):
        for k in range(4):
            y, x = offsets[n, k].tolist()
            assert torch.equal(tiles[n, k], images[n, :, y : y + tile, x : x + tile])
            r, c = divmod(k, 2)
            assert r * cell <= y <= (r + 1) * cell - tile
            assert c * cell <= x <= (c + 1) * cell - tile
    assert len({tuple(o) for o in (offsets % cell).reshape(-1, 2).tolist()}) > 1
    centred = jigsaw.cut_tiles(images, 2, tile, jitter=0, return_offsets=True)[1]
    assert (centred % cell == (cell - tile) // 2).all()


def test_permutation_applied_and_inverted_restores_tile_order():
    tiles = torch.rand(7, 9, 3, 5, 5)
    perms = jigsaw.hamming_permutations(9, 100, 0)[torch.randint(0, 100, (7,))]
    shuffled = jigsaw.apply_permutation(tiles, perms)
    for n in range(7):
        for i in range(9):
            assert torch.equal(shuffled[n, i], tiles[n, perms[n, i]])
    assert torch.equal(jigsaw.apply_permutation(shuffled, jigsaw.invert_permutation(perms)), tiles)


def test_jigsaw_puzzles_are_labelled_by_their_permutation():
    # Each cell is one constant grey encoding its index, so a tile tells where it came from.
    size, grid = 96, 3
    sup = JigsawSupervisor(image_size=size, grid=grid, brightness=0, contrast=0, grayscale=0)
    cell = size // grid
    image = torch.zeros(3, size, size)
    for k in range(grid * grid):
        r, c = divmod(k, grid)
        image[:, r * cell : (r + 1) * cell, c * cell : (c + 1) * cell] = (k + 1) / 10
    puzzles, labels = sup.make_puzzles(image.expand(16, -1, -1, -1))
    source = (puzzles.mean(dim=(2, 3, 4)) * 10).round().long() - 1  # (16, 9) tile origin
    assert torch.equal(source, sup.permutations[labels])
    inverse = jigsaw.invert_permutation(sup.permutations[labels])
    restored = jigsaw.apply_permutation(puzzles, inverse)
    assert torch.equal(
        (restored.mean(dim=(2, 3, 4)) * 10).round().long() - 1, torch.arange(9).expand(16, 9)
    )


def test_relative_position_labels_match_patch_offsets():
    size = 96
    sup = RelativePositionSupervisor(image_size=size, colour_dropping=False)
    cell = size // 3
    image = torch.zeros(3, size, size)
    for r in range(3):
        for c in range(3):
            block = image[:, r * cell : (r + 1) * cell, c * cell : (c + 1) * cell]
            block[0], block[1], block[2] = r / 4, c / 4, 0.5  # the patch encodes its cell
    centre, neighbour, labels = sup.make_pairs(image.expand(64, -1, -1, -1))
    assert set(labels.tolist()) == set(range(8))
    assert torch.allclose(centre[:, :2].amin(dim=(2, 3)), torch.tensor(0.25))
    assert torch.allclose(centre[:, :2].amax(dim=(2, 3)), torch.tensor(0.25))
    where = (neighbour[:, :2].mean(dim=(2, 3)) * 4).round().long() - 1  # (row, col) offset
    assert torch.equal(where, torch.tensor(OFFSETS)[labels])
    assert (neighbour[:, :2].amax(dim=(2, 3)) == neighbour[:, :2].amin(dim=(2, 3))).all()


def test_relative_position_gap_jitter_and_colour_dropping():
    sup = RelativePositionSupervisor(image_size=96)
    assert sup.jitter >= 1 and sup.cell - sup.patch_size - 2 * sup.jitter >= 1  # a real gap
    images = torch.rand(32, 3, 96, 96)
    _, offsets = jigsaw.cut_tiles(
        images,
        3,
        sup.patch_size,
        jitter=sup.jitter,
        generator=torch.Generator().manual_seed(0),
        return_offsets=True,
    )
    assert len(set((offsets[:, 4] % sup.cell).reshape(-1).tolist())) > 1  # jittered
    tiles = images[:, :, : sup.patch_size, : sup.patch_size]
    dropped = jigsaw.drop_colour(tiles, generator=torch.Generator().manual_seed(0))
    kept = (dropped == tiles).flatten(2).all(2)  # (N, C): channels left untouched
    assert (kept.sum(1) == 1).all() and len(set(kept.float().argmax(1).tolist())) == 3
    noise = dropped[~kept].flatten(1).std(1)
    assert (noise < 0.02 * tiles.std()).all()


def test_permutation_sets_have_the_documented_hamming_distance():
    two = jigsaw.hamming_permutations(4, 24, 0)
    assert len({tuple(p) for p in two.tolist()}) == 24 and jigsaw.min_hamming_distance(two) == 2
    three = jigsaw.hamming_permutations(9, 100, 0)
    assert three.shape == (100, 9)
    assert (three.sort(1).values == torch.arange(9)).all()  # every row is a permutation
    assert len({tuple(p) for p in three.tolist()}) == 100
    dist = (three[:, None] != three[None]).sum(-1) + 10 * torch.eye(100, dtype=torch.long)
    assert int(dist.min()) == MIN_HAMMING_3X3_100 == jigsaw.min_hamming_distance(three)
    assert torch.equal(three, jigsaw.hamming_permutations(9, 100, 0))  # deterministic
    assert not torch.equal(three, jigsaw.hamming_permutations(9, 100, 1))
    # Greedy max-min beats a random draw of the same size by a wide margin.
    random = torch.stack(
        [torch.randperm(9, generator=torch.Generator().manual_seed(s)) for s in range(100)]
    )
    assert jigsaw.min_hamming_distance(random) < MIN_HAMMING_3X3_100


def test_jigsaw_permutation_set_is_saved_with_the_checkpoint(tmp_path):
    sup = JigsawSupervisor(image_size=32, permutation_seed=3, n_permutations=10)
    sup.save(str(tmp_path / "run"))
    other = JigsawSupervisor(image_size=32, n_permutations=10).load(str(tmp_path / "run"))
    assert torch.equal(other.permutations, sup.permutations)


def test_exemplar_classifier_has_one_class_per_image_and_loads_without_data(subset64, tmp_path):
    sup = ExemplarSupervisor(subset64, seed=0)
    assert sup.classifier.dims[-1] == 64
    name = str(tmp_path / "run")
    sup.save(name)
    fresh = ExemplarSupervisor(backbone="convnet-small", image_size=32).load(name)
    assert fresh.classifier.dims[-1] == 64
    assert torch.equal(fresh.classifier[-1].weight, sup.classifier[-1].weight)


# ---------------------------------------------------------------------- configuration errors
@pytest.mark.parametrize(
    "cls, kwargs, size, minimum",
    [
        (JigsawSupervisor, {}, 8, 10),
        (JigsawSupervisor, {"grid": 3}, 12, 15),
        (RelativePositionSupervisor, {}, 14, 15),
    ],
)
def test_too_small_images_name_image_size_and_the_minimum(cls, kwargs, size, minimum):
    with pytest.raises(ConfigError, match=rf"image_size={size}\b.*at least {minimum} pixels"):
        cls(image_size=size, **kwargs)
    cls(image_size=minimum, **kwargs)  # the stated minimum works


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="loss"):
        ExemplarSupervisor(loss="contrastive")
    with pytest.raises(ConfigError, match="n_perms"):
        JigsawSupervisor(image_size=32, n_permutations=25)
    with pytest.raises(ConfigError, match="num_images"):
        ExemplarSupervisor(data.dataset(random_images(8, 32)), num_images=4)
