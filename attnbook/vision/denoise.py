"""Non-local means denoising (Buades et al. 2005), the ancestor of the non-local block, as attention (chapter 5).

Every pixel p becomes a weighted average of the pixels q in the (2d+1)×(2d+1) search window around it, weighted
by how alike the s×s patches around p and q are:

    NL[v](p) = Σ_q w(p, q) v(q),    w(p, q) ∝ exp(−Σ_k a_k (P_k(p) − P_k(q))² / h²)

with a Gaussian window a over the patch (summing to one). That is `attnbook.core.attention` with one query per
pixel (its patch), the window's patches as keys, their centre pixels as values, a negative weighted squared
distance as the score and the part of the window inside the image as the mask. The conventions follow
``skimage.restoration.denoise_nl_means(..., fast_mode=False)``: patches padded by reflection, windows cut at the
border, a = exp(−‖k‖² / (2A²)) with A = (s − 1) / 4. (scikit-image also skips candidates whose distance passes a
cut-off and uses a fast approximate exponential; chapter 5 measures how little that changes.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from attnbook.core import attention
from attnbook.errors import check_ndim, check_tensor


def patch_kernel(patch_size: int, h: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """The patch weights a_k / h² (s, s): a Gaussian of width A = (s − 1) / 4 summing to 1 / h²."""
    offsets = torch.arange(patch_size, dtype=dtype) - patch_size // 2
    a = (patch_size - 1) / 4
    kernel = torch.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * a * a))
    return kernel / (kernel.sum() * h * h)


def negative_squared_distance(query: Tensor, key: Tensor) -> Tensor:
    """The score −‖q − k‖² (queries and keys already scaled by √(a / h²))."""
    return -(query.unsqueeze(-2) - key.unsqueeze(-3)).square().sum(-1)


def nl_means_windows(image: Tensor, patch_size: int, patch_distance: int) -> tuple[Tensor, Tensor, Tensor]:
    """Patches and windows of a grey image (H, W): query patches (H·W, 1, s²), the window's patches
    (H·W, K, s²) and centre pixels (H·W, K, 1), with K = (2d + 1)², and a mask (H·W, 1, K) of the window
    positions inside the image."""
    height, width = image.shape
    r, window = patch_size // 2, 2 * patch_distance + 1
    padded = F.pad(image[None, None], (r,) * 4, mode="reflect")
    patches = F.unfold(padded, patch_size).view(1, patch_size**2, height, width)  # (1, s², H, W)
    keys = F.unfold(patches, window, padding=patch_distance).view(patch_size**2, window**2, -1)
    values = F.unfold(image[None, None], window, padding=patch_distance)  # (1, K, H·W)
    inside = F.unfold(torch.ones_like(image)[None, None], window, padding=patch_distance) > 0
    query = patches.view(patch_size**2, -1).T.unsqueeze(1)
    return query, keys.permute(2, 1, 0), values[0].T.unsqueeze(-1), inside[0].T.unsqueeze(1)


def nl_means(image: Tensor, patch_size: int = 5, patch_distance: int = 6, h: float = 0.1) -> tuple[Tensor, Tensor]:
    """Denoise a grey ``image`` (H, W): returns ``(denoised (H, W), weights (H·W, 1, (2d + 1)²))``."""
    image = check_tensor("image", image)
    check_ndim("image", image, 2, "(height, width)")
    if patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"patch_size: expected an odd positive size, got {patch_size}")
    if patch_distance < 0 or h <= 0:
        raise ValueError(f"patch_distance, h: expected d >= 0 and h > 0, got {patch_distance}, {h}")
    query, keys, values, mask = nl_means_windows(image, patch_size, patch_distance)
    kernel = patch_kernel(patch_size, h, image.dtype).flatten()  # (s²,)
    scale = kernel.sqrt()
    out, weights = attention(query * scale, keys * scale, values, mask=mask, score=negative_squared_distance)
    return out.view_as(image), weights


def psnr(estimate: Tensor, clean: Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: 10 log₁₀(range² / mean squared error)."""
    mse = (estimate - clean).square().mean()
    return float(10 * torch.log10(data_range**2 / mse))
