"""Prediction of large images at full resolution by overlapping tiles, blended, one row of tiles
at a time so that memory stays bounded (MMSegmentation's 'slide' mode: a crop size and a
stride).

    class_map = tiled_class_map(predictor, image, Tiling(512, 128))   # uint8 [h, w]

Any predictor with `predict(uint8 RGB [h, w, 3]) -> float probabilities [h, w, n]` works (the
run's Predictor, ExportedPredictor). Tiles start every `size - overlap` pixels; the last row and
column of tiles are shifted inward to end at the image's edge, and an image smaller than a tile
runs whole in that direction. Where tiles overlap, their probabilities are averaged with a
weight that falls linearly towards each tile's borders, where the network saw the least
context, so that seams vanish.

Memory: only the rows that the next row of tiles can still touch are accumulated (tile rows x
image width x classes, float32: 270 MB for a 12000-pixel-wide photo, 11 classes, tile 512);
finished rows are handed on (into the uint8 class map by argmax). All of a 12000x9000 photo's
probabilities at once would take 4.7 GB.
"""
import dataclasses

import numpy as np

from utils.errors import ConfigError

# A tile's border pixels keep this share of its centre's weight: where a border meets another
# tile's centre the centre wins, yet a pixel that only borders cover still gets a mean. On a
# trained demo FCN-8s (12 scenes of 96x128, tiles of 64 overlapping by 32), tiled and whole
# class maps agreed on 97.9% of the pixels with this window, 95.1% with a plain mean of the
# tiles (floor 1, MMSegmentation's 'slide' mode); with tiles of 96, 99.7% and 99.3%.
WINDOW_FLOOR = 0.05
DEFAULT_OVERLAP_SHARE = 4  # overlap defaults to a quarter of the tile


@dataclasses.dataclass(frozen=True)
class Tiling:
    """Square tiles of `size` pixels that overlap their neighbours by `overlap` pixels."""
    size: int
    overlap: int

    def __post_init__(self):
        if self.size < 1 or not 0 <= self.overlap < self.size:
            raise ConfigError('tiles of %d pixels cannot overlap by %d pixels (0 <= overlap < '
                              'tile)' % (self.size, self.overlap))

    @property
    def stride(self):
        return self.size - self.overlap


def default_overlap(size):
    """The overlap of tiles of `size` pixels when none is given."""
    return size // DEFAULT_OVERLAP_SHARE


def tile_starts(length, size, stride):
    """Starts of windows of `size` pixels every `stride` pixels along `length`, the last one
    shifted inward to end at `length`; [0] when `length` <= `size` (one window, the whole)."""
    if length <= size:
        return [0]
    return list(range(0, length - size, stride)) + [length - size]


def blend_window(height, width, floor=WINDOW_FLOOR):
    """float32 [height, width]: 1 at the centre, falling linearly to `floor` at the borders (a
    pyramid: the product of a triangle along each axis)."""
    def triangle(n):
        distance = np.minimum(np.arange(n) + 0.5, n - 0.5 - np.arange(n))  # to the nearer end
        return np.maximum(distance / (n / 2.0), floor).astype(np.float32)
    return triangle(height)[:, None] * triangle(width)[None, :]


def blended_rows(predictor, image, tiling):
    """Yields (top, probabilities float32 [rows, w, n]) of consecutive blocks of the image's
    rows, top to bottom, each the weighted mean of the tiles that cover it.

    The yielded array is a view of a buffer that the next step overwrites: use (or copy) it
    before asking for the next block.
    """
    height, width = image.shape[:2]
    tile_h, tile_w = min(tiling.size, height), min(tiling.size, width)
    tops = tile_starts(height, tiling.size, tiling.stride)
    lefts = tile_starts(width, tiling.size, tiling.stride)
    window = blend_window(tile_h, tile_w)
    total = weights = None  # rows [top, top + tile_h) of the image: [tile_h, w, n], [tile_h, w]
    for i, top in enumerate(tops):
        # 1. Add this row of tiles, weighted, to the rows it covers.
        for left in lefts:
            tile = np.ascontiguousarray(image[top:top + tile_h, left:left + tile_w])
            probabilities = predictor.predict(tile)  # [tile_h, tile_w, n]
            if total is None:
                total = np.zeros((tile_h, width, probabilities.shape[-1]), np.float32)
                weights = np.zeros((tile_h, width), np.float32)
            total[:, left:left + tile_w] += probabilities * window[..., None]
            weights[:, left:left + tile_w] += window
        # 2. Rows above the next row of tiles get nothing more: hand them on, normalised.
        done = (tops[i + 1] if i + 1 < len(tops) else height) - top
        total[:done] /= weights[:done, :, None]
        yield top, total[:done]
        # 3. Move the rows still open to the top of the buffers; the rest starts empty.
        keep = tile_h - done
        total[:keep], weights[:keep] = total[done:], weights[done:]
        total[keep:], weights[keep:] = 0, 0


def tiled_class_map(predictor, image, tiling, on_rows=None):
    """uint8 [h, w]: the argmax of the blended tile probabilities of the RGB `image`, never
    holding more than one row of tiles' probabilities; each block of blended rows is also
    given to on_rows(top, probabilities [rows, w, n]) when set (to save them)."""
    class_map = np.empty(image.shape[:2], np.uint8)
    for top, rows in blended_rows(predictor, image, tiling):
        class_map[top:top + len(rows)] = rows.argmax(-1)
        if on_rows:
            on_rows(top, rows)
    return class_map


def tiled_probabilities(predictor, image, tiling):
    """float32 [h, w, n]: all the blended probabilities (for an image small enough to hold
    them, e.g. for the dense CRF)."""
    probabilities = None
    for top, rows in blended_rows(predictor, image, tiling):
        if probabilities is None:
            probabilities = np.empty(image.shape[:2] + rows.shape[-1:], np.float32)
        probabilities[top:top + len(rows)] = rows
    return probabilities
