"""Lightning DataModule that serves Fashion-MNIST from memory.

The whole dataset is 55 MB of uint8, so it is held as tensors (on the GPU when training
there) and batches are cut by index. Scaling to [0, 1] and augmentation run on the
training device after transfer, on whole batches.
"""

import logging
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch

from fashion import data
from fashion.augment import AugmentSettings, BatchAugment

log = logging.getLogger(__name__)


class EpochPermutation:
    """Seeded shuffling that depends only on (seed, epoch), so a resumed run gets the same
    batches as an uninterrupted one. Lightning calls set_epoch on it."""

    def __init__(self, size: int, shuffle: bool, seed: int) -> None:
        self.size, self.shuffle, self.seed, self.epoch = size, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self, device: torch.device) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size, device=device)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.size, generator=generator).to(device)


class TensorBatches:
    """Iterable of (images, labels) batches cut from in-memory tensors.

    With world_size > 1 each rank takes every world_size-th batch, so processes see
    disjoint data without a DistributedSampler.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.drop_last = batch_size, drop_last
        self.rank, self.world_size = rank, world_size
        self.sampler = EpochPermutation(len(labels), shuffle, seed)
        self.batch_sampler = None  # Lightning inspects DataLoader-like attributes

    def _batch_count(self) -> int:
        full, rest = divmod(len(self.labels), self.batch_size)
        batches = full if self.drop_last or rest == 0 else full + 1
        # every rank must run the same number of steps, or DDP waits forever
        return batches - batches % self.world_size if self.world_size > 1 else batches

    def __len__(self) -> int:
        return self._batch_count() // self.world_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.sampler.indices(self.images.device)
        batches = order.split(self.batch_size)[: self._batch_count()]
        for index in batches[self.rank :: self.world_size]:
            yield self.images[index], self.labels[index]


class FashionDataModule(L.LightningDataModule):
    def __init__(
        self,
        root: str | None = None,
        task: str = "superclass",
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int = 6000,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        verify: bool = True,
        download: bool = True,
        augment: AugmentSettings | None = None,
        channels_last: bool = False,
        data_on_device: bool = True,
    ) -> None:
        super().__init__()
        self.root, self.task = root, data.get_task(task)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.shuffle_seed = val_size, split_seed, shuffle_seed
        self.verify, self.download = verify, download
        self.augment = BatchAugment(augment) if augment and augment.enabled else None
        self.channels_last, self.data_on_device = channels_last, data_on_device
        self.directory: Path | None = None
        self.tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.fine_labels: dict[str, torch.Tensor] = {}

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.task.class_names

    @property
    def num_classes(self) -> int:
        return self.task.num_classes

    def prepare_data(self) -> None:
        self.load()

    def load(self) -> None:
        """Find, verify and read the files once; raises data.DataError on a bad or missing file.

        Called before training starts, so bad data fails fast, before any run is tracked.
        """
        if self.tensors:
            return
        self.directory = data.locate(self.root, download=self.download)
        train_images, train_fine = data.read_split(self.directory, "train", verify=self.verify)
        test_images, test_fine = data.read_split(self.directory, "test", verify=self.verify)
        if not 0 <= self.val_size < len(train_fine):
            raise data.DataError(
                f"data.val_size={self.val_size} must be in [0, {len(train_fine)}), "
                f"the number of training images in {self.directory}; lower data.val_size"
            )

        # the split depends only on split_seed, so every model and seed uses the same one
        generator = torch.Generator().manual_seed(self.split_seed)
        order = torch.randperm(len(train_fine), generator=generator)
        val_index, train_index = order[: self.val_size], order[self.val_size :]
        self.fine_labels = {
            "train": train_fine[train_index],
            "val": train_fine[val_index],
            "test": test_fine,
        }
        for split, images in (
            ("train", train_images[train_index]),
            ("val", train_images[val_index]),
            ("test", test_images),
        ):
            self.tensors[split] = (images, self.task.map_labels(self.fine_labels[split]))
        log.info(
            "data from %s: %d train, %d val, %d test images, task %s (%d classes)",
            self.directory,
            len(train_index),
            len(val_index),
            len(test_fine),
            self.task.name,
            self.num_classes,
        )

    def setup(self, stage: str | None = None) -> None:
        self.load()
        device = self._data_device()
        if self.tensors["train"][0].device != device:
            self.tensors = {
                split: (images.to(device), labels.to(device))
                for split, (images, labels) in self.tensors.items()
            }
            log.info("dataset moved to %s", device)

    def _data_device(self) -> torch.device:
        if self.data_on_device and self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def _batches(self, split: str, batch_size: int, shuffle: bool) -> TensorBatches:
        images, labels = self.tensors[split]
        rank, world = (
            (0, 1) if self.trainer is None else (self.trainer.global_rank, self.trainer.world_size)
        )
        return TensorBatches(
            images, labels, batch_size, shuffle, seed=self.shuffle_seed, rank=rank, world_size=world
        )

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", self.eval_batch_size, shuffle=False)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        images, labels = batch
        x = images.unsqueeze(1).float().div_(255)  # (B, 28, 28) uint8 -> (B, 1, 28, 28) in [0, 1]
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            x = self.augment(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, labels
