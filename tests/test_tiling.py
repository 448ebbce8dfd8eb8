"""Tiled prediction (utils/inference/tiling.py): the row-band blending against a reference that
holds every probability in memory, bounded memory, and agreement with whole-image prediction on
a trained run."""
import tracemalloc

import numpy as np
import pytest

from utils.data.demo import make_scene
from utils.errors import ConfigError
from utils.inference.tiling import (Tiling, blend_window, blended_rows, default_overlap,
                                    tile_starts, tiled_class_map, tiled_probabilities)

NUM_CLASSES = 5


def softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


class PixelPredictor:
    """A local fake: each pixel's probabilities are a function of its colour alone, so tiles
    must change nothing."""
    weights = np.random.RandomState(7).normal(0, 0.05, (3, NUM_CLASSES))

    def __init__(self):
        self.shapes = []

    def predict(self, image):
        self.shapes.append(image.shape[:2])
        return softmax((image.astype(np.float32) - 128) @ self.weights)


class ContextPredictor(PixelPredictor):
    """A non-local fake, as a network is: each pixel also depends on its tile's mean colour and
    on where it lies in the tile."""

    def predict(self, image):
        height, width = image.shape[:2]
        rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
        context = image.reshape(-1, 3).mean(0) / 64.0
        logits = (image.astype(np.float32) - 128) @ self.weights + context[None, None, :1]
        logits[..., 1] += rows / height - cols / width
        logits[..., 2] += np.sin(rows / 5.0)
        self.shapes.append((height, width))
        return softmax(logits)


def reference_blend(predictor, image, tiling):
    """Every tile's weighted probabilities summed over the whole image at once (the memory the
    band logic avoids), then normalised: float32 [h, w, n]."""
    height, width = image.shape[:2]
    tile_h, tile_w = min(tiling.size, height), min(tiling.size, width)
    window = blend_window(tile_h, tile_w)
    total = np.zeros((height, width, NUM_CLASSES), np.float64)
    weights = np.zeros((height, width), np.float64)
    for top in tile_starts(height, tiling.size, tiling.stride):
        for left in tile_starts(width, tiling.size, tiling.stride):
            probabilities = predictor.predict(image[top:top + tile_h, left:left + tile_w])
            total[top:top + tile_h, left:left + tile_w] += probabilities * window[..., None]
            weights[top:top + tile_h, left:left + tile_w] += window
    return total / weights[..., None]


def random_image(height, width, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (height, width, 3), np.uint8)


def test_tiles_cover_the_image_and_the_last_is_shifted_inward():
    assert tile_starts(100, 40, 30) == [0, 30, 60]
    assert tile_starts(101, 40, 30) == [0, 30, 60, 61]
    assert tile_starts(40, 40, 30) == tile_starts(25, 40, 30) == [0]
    for length in range(41, 300, 7):
        starts = tile_starts(length, 40, 27)
        assert starts[-1] + 40 == length and all(0 < b - a <= 27 for a, b in
                                                 zip(starts, starts[1:]))


def test_blend_window_falls_from_the_centre_to_a_floor():
    window = blend_window(64, 48)
    assert window.shape == (64, 48) and window.dtype == np.float32
    np.testing.assert_allclose(window, window[::-1, ::-1])
    assert window.max() == window[31:33, 23:25].max() and window.max() > 0.95
    assert 0 < window.min() == window[0, 0] and window[0, 0] < 0.1
    assert np.all(np.diff(window[1:32, 24]) > 0)  # rises from the floor to the centre


def test_tiling_settings_are_checked():
    assert Tiling(512, default_overlap(512)).stride == 384
    for size, overlap in ((64, 64), (64, -1), (0, 0)):
        with pytest.raises(ConfigError, match='cannot overlap'):
            Tiling(size, overlap)


@pytest.mark.parametrize('shape, tiling', [
    ((150, 97), Tiling(48, 13)),   # odd sizes: the last row and column shifted inward
    ((40, 200), Tiling(64, 16)),   # lower than a tile: one row of tiles, whole height
    ((30, 20), Tiling(64, 16)),    # smaller than a tile: runs whole
    ((128, 128), Tiling(64, 0)),   # no overlap
])
def test_a_local_predictor_gives_the_whole_image_result(shape, tiling):
    image = random_image(*shape)
    whole = PixelPredictor().predict(image)
    tiled = tiled_probabilities(PixelPredictor(), image, tiling)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)
    np.testing.assert_array_equal(tiled_class_map(PixelPredictor(), image, tiling),
                                  whole.argmax(-1))


@pytest.mark.parametrize('shape, tiling', [((150, 97), Tiling(48, 13)),
                                           ((203, 64), Tiling(40, 20)),
                                           ((120, 90), Tiling(48, 30)),  # overlap > stride
                                           ((96, 128), Tiling(64, 32))])
def test_row_bands_match_a_reference_that_holds_everything(shape, tiling):
    image = random_image(*shape, seed=3)
    predictor = ContextPredictor()
    reference = reference_blend(predictor, image, tiling)
    tiled = tiled_probabilities(predictor, image, tiling)
    np.testing.assert_allclose(tiled, reference, atol=1e-5)
    np.testing.assert_allclose(tiled.sum(-1), 1, atol=1e-5)
    class_map = tiled_class_map(predictor, image, tiling)
    assert class_map.dtype == np.uint8
    margin = np.sort(reference, -1)
    clear = margin[..., -1] - margin[..., -2] > 1e-4  # ties may break either way in float32
    np.testing.assert_array_equal(class_map[clear], reference.argmax(-1)[clear])
    assert clear.mean() > 0.99
    # Each tile ran once, at the tile's size, and the blocks handed on cover each row once.
    assert set(predictor.shapes) == {(min(tiling.size, shape[0]), min(tiling.size, shape[1]))}
    tops = [top for top, _ in blended_rows(ContextPredictor(), image, tiling)]
    heights = [len(rows) for _, rows in blended_rows(ContextPredictor(), image, tiling)]
    assert tops == list(np.cumsum([0] + heights[:-1])) and sum(heights) == shape[0]
    assert max(heights) <= tiling.size


def test_memory_holds_one_row_of_tiles_not_the_whole_image():
    image = random_image(6000, 160, seed=5)
    full_bytes = image.shape[0] * image.shape[1] * NUM_CLASSES * 4
    predictor = PixelPredictor()
    tracemalloc.start()
    try:
        tiled_class_map(predictor, image, Tiling(64, 16))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Buffers of 64 rows of 6000, the uint8 class map and the fake's float64 temporaries: 1.5
    # MB where all the probabilities would take 19 MB.
    assert peak < full_bytes / 8, (peak, full_bytes)


@pytest.fixture(scope='module')
def confident_run(demo_records, tmp_path_factory):
    """A demo FCN-8s trained long enough (120 steps, ~40 s) to be confident: the shared 3-step
    run predicts one class everywhere, which any tiling would reproduce."""
    from tests.conftest import train_demo_run
    return train_demo_run(demo_records[0], str(tmp_path_factory.mktemp('confident') / 'run'),
                          120)


def test_tiled_prediction_agrees_with_the_whole_image_on_a_trained_run(confident_run):
    """Scenes that fit whole (192x256, the training's look at 3x its 64x64 crops), by tiles of
    twice the training crop, as 512-pixel tiles are for CamVid's 224x320 crops: 2x3 tiles."""
    from utils.inference.predictor import Predictor
    predictor = Predictor.from_run(confident_run, log=lambda *_: None)
    tiling = Tiling(128, 64)
    try:
        for seed in (20, 21, 22):
            scene, _ = make_scene(np.random.RandomState(seed), 192, 256)
            whole = predictor.predict(scene)
            tiled = tiled_class_map(predictor, scene, tiling)
            tiled_probs = tiled_probabilities(predictor, scene, tiling)
            assert len(np.unique(whole.argmax(-1))) >= 3  # a real segmentation, not one class
            agreement = (tiled == whole.argmax(-1)).mean()
            assert agreement >= 0.99, (seed, agreement)
            np.testing.assert_array_equal(tiled, tiled_probs.argmax(-1))
    finally:
        predictor.close()
