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


def test_the_pool_gives_the_serial_results_in_order():
    from utils.crf import CrfPool
    rng = np.random.RandomState(1)
    inputs = []
    for index in range(5):
        image = rng.randint(0, 255, (24, 32, 3)).astype(np.uint8)
        probs = rng.dirichlet(np.ones(3), (24, 32)).astype(np.float32)
        inputs.append((index, image, probs))
    params = {'crf_iterations': 3}
    with CrfPool(workers=2) as pool:
        pooled = list(pool.map(iter(inputs), params))
    assert [index for index, _ in pooled] == list(range(5))
    for (index, image, probs), (_, class_map) in zip(inputs, pooled):
        np.testing.assert_array_equal(class_map, dense_crf(image, probs, **params))
