import numpy as np

from utils.crf import dense_crf


def test_crf_snaps_a_blurred_prediction_to_the_image_edge():
    h, w = 40, 60
    truth = np.zeros((h, w), np.int64)
    truth[:, 30:] = 1
    image = np.where(truth[..., None] == 1, 220, 30).astype(np.uint8).repeat(3, axis=2)
    # A coarse network's guess: boundary shifted to x = 24 and soft.
    x = np.arange(w)
    p1 = 1 / (1 + np.exp(-(x - 24) / 3.0))
    probs = np.stack([1 - p1, p1], -1)[None].repeat(h, axis=0).astype(np.float32)
    before = (probs.argmax(-1) == truth).mean()
    after = (dense_crf(image, probs, 5) == truth).mean()
    assert after > before + 0.05
    assert after > 0.97
