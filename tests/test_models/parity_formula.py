"""Deterministic tensors of the parity fixtures (tests/data/parity).

The official CoTNet code was run on exactly these tensors to produce
``reference_tiny.json``: every parameter is a function of its key (seeded by
the key's CRC32), the images and projections of an integer seed or a key.
Nothing random is stored; any change to the draws below breaks parity, which
``test_formula_fingerprint`` guards.
"""
import math
import zlib

import torch
import torch.nn.functional as F


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _key_seed(key: str) -> int:
    return zlib.crc32(key.encode())


def parameter(key: str, shape) -> torch.Tensor:
    """The float64 value of one official state-dict entry."""
    shape = tuple(shape)
    name = key.split('.')[-1]
    if name == 'num_batches_tracked':
        return torch.tensor(0, dtype=torch.long)
    g = _generator(_key_seed(key))

    def uniform(low, width):
        return low + width * torch.rand(
            shape, generator=g, dtype=torch.float64)

    def normal(std):
        return std * torch.randn(shape, generator=g, dtype=torch.float64)

    if name == 'running_var':
        return uniform(0.8, 0.4)
    if name == 'running_mean':
        return normal(0.05)
    if len(shape) == 1:
        return uniform(0.3, 0.4) if name == 'weight' else normal(0.05)
    return torch.randn(shape, generator=g, dtype=torch.float64) / math.sqrt(
        math.prod(shape[1:]))


def state_dict(manifest: dict) -> dict:
    """An official-layout state dict for a manifest ``{key: shape}``."""
    return {key: parameter(key, shape) for key, shape in manifest.items()}


def image(seed: int, shape) -> torch.Tensor:
    """(N, C, H, W) float64: smooth per-sample patterns plus fine noise."""
    n, c, h, w = shape
    g = _generator(seed)
    coarse = torch.randn((n, c, 6, 6), generator=g, dtype=torch.float64)
    smooth = F.interpolate(
        coarse, size=(h, w), mode='bilinear', align_corners=False)
    noise = torch.randn(tuple(shape), generator=g, dtype=torch.float64)
    return smooth + 0.3 * noise


def projections(feature: torch.Tensor, key: str, k: int = 8) -> torch.Tensor:
    """(N, k): ``k`` random projections of each sample's feature map."""
    directions = torch.randn((k, ) + tuple(feature.shape[1:]),
                             generator=_generator(_key_seed(key)),
                             dtype=torch.float64)
    return feature.to(torch.float64).flatten(1) @ directions.flatten(1).T
