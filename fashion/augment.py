"""Batched augmentation on the training device.

Every operation draws its own random parameters per image and runs on the whole batch
at once, so augmentation costs a few tensor ops per batch instead of Python per image.
Inputs and outputs are float images in [0, 1], shape (B, 1, H, W).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSettings:
    """Probability and range of each operation; a probability of 0 turns it off."""

    hflip_p: float = 0.0
    vflip_p: float = 0.0
    rotate_p: float = 0.0
    rotate_degrees: float = 0.0  # angle drawn uniformly from [-degrees, degrees]
    crop_p: float = 0.0
    crop_padding: int = 0  # pixels of zero padding before cropping back to size
    cutout_p: float = 0.0
    cutout_size: int = 0  # side of the square erased, in pixels

    @property
    def enabled(self) -> bool:
        return any(
            p > 0 for p in (self.hflip_p, self.vflip_p, self.rotate_p, self.crop_p, self.cutout_p)
        )


class BatchAugment(torch.nn.Module):
    def __init__(self, settings: AugmentSettings) -> None:
        super().__init__()
        self.settings = settings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.settings
        if s.hflip_p > 0:
            x = torch.where(_coin(x, s.hflip_p), x.flip(-1), x)
        if s.vflip_p > 0:
            x = torch.where(_coin(x, s.vflip_p), x.flip(-2), x)
        if (s.rotate_p > 0 and s.rotate_degrees > 0) or (s.crop_p > 0 and s.crop_padding > 0):
            x = self._rotate_and_shift(x)
        if s.cutout_p > 0 and s.cutout_size > 0:
            x = self._cutout(x)
        return x

    def _rotate_and_shift(self, x: torch.Tensor) -> torch.Tensor:
        # One resampling for both operations: a random crop of a zero-padded image is a
        # whole-pixel translation with zeros filling in, which grid_sample does exactly.
        s = self.settings
        batch, _, height, width = x.shape
        angle = torch.zeros(batch, device=x.device)
        shift = torch.zeros(batch, 2, device=x.device)
        if s.rotate_p > 0:
            drawn = (torch.rand(batch, device=x.device) * 2 - 1) * math.radians(s.rotate_degrees)
            angle = torch.where(_coin(angle, s.rotate_p), drawn, angle)
        if s.crop_p > 0:
            pixels = torch.randint(
                -s.crop_padding, s.crop_padding + 1, (batch, 2), device=x.device
            ).float()
            pixels = torch.where(_coin(pixels, s.crop_p), pixels, torch.zeros_like(pixels))
            # grid coordinates span [-1, 1], so one pixel is 2 / size
            shift = pixels * torch.tensor([2 / width, 2 / height], device=x.device)

        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        )
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _cutout(self, x: torch.Tensor) -> torch.Tensor:
        s = self.settings
        batch, _, height, width = x.shape
        size = s.cutout_size
        top = torch.randint(-(size // 2), height - size // 2, (batch, 1, 1), device=x.device)
        left = torch.randint(-(size // 2), width - size // 2, (batch, 1, 1), device=x.device)
        rows = torch.arange(height, device=x.device).view(1, -1, 1)
        cols = torch.arange(width, device=x.device).view(1, 1, -1)
        hole = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
        hole = hole & _coin(hole, s.cutout_p).view(batch, 1, 1)
        return x.masked_fill(hole.unsqueeze(1), 0.0)


def _coin(like: torch.Tensor, p: float) -> torch.Tensor:
    """Per-image Bernoulli(p) draws, shaped to broadcast against `like`."""
    shape = (like.shape[0],) + (1,) * (like.dim() - 1)
    return torch.rand(shape, device=like.device) < p
