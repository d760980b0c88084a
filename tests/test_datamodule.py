"""In-memory batching and batched augmentation."""

from pathlib import Path

import pytest
import torch

from fashion.augment import AugmentSettings, BatchAugment
from fashion.data import DataError
from fashion.datamodule import FashionDataModule, TensorBatches


def images_batch(count: int = 8) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(count, 1, 28, 28)


def test_batches_cover_every_index_once() -> None:
    labels = torch.arange(10)
    batches = TensorBatches(labels.view(10, 1, 1), labels, batch_size=4, shuffle=True, seed=3)
    seen = torch.cat([y for _, y in batches])
    assert len(batches) == 3
    assert sorted(seen.tolist()) == list(range(10))


def test_shuffle_depends_on_seed_and_epoch_only() -> None:
    labels = torch.arange(100)

    def order(seed: int, epoch: int) -> list[int]:
        batches = TensorBatches(labels.view(100, 1, 1), labels, 10, shuffle=True, seed=seed)
        batches.sampler.set_epoch(epoch)
        return torch.cat([y for _, y in batches]).tolist()

    assert order(0, 1) == order(0, 1)
    assert order(0, 1) != order(0, 2)
    assert order(0, 1) != order(1, 1)


def test_ranks_take_equal_disjoint_batches() -> None:
    labels = torch.arange(20)
    parts = [
        TensorBatches(labels.view(20, 1, 1), labels, 4, shuffle=False, rank=rank, world_size=2)
        for rank in (0, 1)
    ]
    # 5 batches: the fifth is dropped so that both ranks run 2 steps
    assert [len(p) for p in parts] == [2, 2]
    assert [len(list(p)) for p in parts] == [2, 2]
    first, second = ({int(v) for _, y in p for v in y} for p in parts)
    assert not first & second
    assert first | second == set(range(16))


def test_drop_last_skips_partial_batch() -> None:
    labels = torch.arange(10)
    batches = TensorBatches(labels.view(10, 1, 1), labels, 4, shuffle=False, drop_last=True)
    assert len(batches) == 2
    assert [len(y) for _, y in batches] == [4, 4]


def test_split_is_seeded_and_disjoint(idx_dir: Path) -> None:
    datamodule = FashionDataModule(root=str(idx_dir), verify=False, val_size=20, split_seed=5)
    datamodule.load()
    train_images, train_labels = datamodule.tensors["train"]
    val_images, _ = datamodule.tensors["val"]
    assert len(train_labels) == 100
    assert len(val_images) == 20
    # fixture images are unique, so no image may sit in both splits
    train_rows = {bytes(image.flatten().tolist()) for image in train_images}
    assert not any(bytes(image.flatten().tolist()) in train_rows for image in val_images)
    assert set(datamodule.tensors["test"][1].tolist()) == {0, 1, 2}


def test_val_size_too_large_names_the_limit(idx_dir: Path) -> None:
    datamodule = FashionDataModule(root=str(idx_dir), verify=False, val_size=500)
    with pytest.raises(DataError, match=r"data.val_size=500 must be in \[0, 120\)"):
        datamodule.load()


def test_no_augmentation_is_identity() -> None:
    x = images_batch()
    assert torch.equal(BatchAugment(AugmentSettings())(x), x)


def test_certain_flips_flip_every_image() -> None:
    x = images_batch()
    assert torch.equal(BatchAugment(AugmentSettings(hflip_p=1.0))(x), x.flip(-1))
    assert torch.equal(BatchAugment(AugmentSettings(vflip_p=1.0))(x), x.flip(-2))


def test_cutout_zeroes_at_most_a_square() -> None:
    x = torch.ones(16, 1, 28, 28)
    out = BatchAugment(AugmentSettings(cutout_p=1.0, cutout_size=6))(x)
    zeros = (out == 0).flatten(1).sum(1)
    assert zeros.max() <= 36
    assert (zeros > 0).all()  # every hole overlaps the image by at least half its side


def test_shift_keeps_shape_range_and_moves_pixels() -> None:
    x = images_batch(32)
    out = BatchAugment(
        AugmentSettings(crop_p=1.0, crop_padding=3, rotate_p=1.0, rotate_degrees=15.0)
    )(x)
    assert out.shape == x.shape
    assert out.min() >= 0
    assert out.max() <= 1
    assert not torch.equal(out, x)
