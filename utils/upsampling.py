"""Bilinear upsampling kernels for transposed convolutions (FCN's `upscore` initialisation)."""
import numpy as np


def upsample_kernel_size(factor):
    """Kernel size of a transposed conv upsampling by `factor` (2 -> 4, 8 -> 16, 32 -> 64)."""
    return 2 * factor


def bilinear_filter(size):
    """2-D bilinear interpolation filter of shape [size, size] (the FCN reference recipe)."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    grid = np.arange(size, dtype=np.float64)
    profile = 1 - np.abs(grid - center) / factor
    return np.outer(profile, profile)


def bilinear_kernel(size, num_channels, corner=False):
    """Weights [size, size, num_channels, num_channels] mapping channel i to channel i only.

    Off-diagonal channel pairs are zero: filling them would mix classes. With `corner`, the
    filter is that of size - 1 (odd, centred on index size/2 - 1) with a zero last row and
    column: the upsampling for features that sit at s*j + s - 1 (see nets/fcn.py ALIGNMENTS).
    """
    weights = np.zeros((size, size, num_channels, num_channels), np.float32)
    kernel = bilinear_filter(size)
    if corner:
        kernel = np.pad(bilinear_filter(size - 1), [(0, 1), (0, 1)])
    for channel in range(num_channels):
        weights[:, :, channel, channel] = kernel
    return weights
