import numpy as np
import tensorflow.compat.v1 as tf

from utils.config import IGNORE_LABEL
from utils.training.losses import softmax_cross_entropy_ignore


def numpy_ce(logits, labels, n, weights=None):
    flat_logits = logits.reshape(-1, n).astype(np.float64)
    flat_labels = labels.ravel()
    keep = flat_labels < n
    z = flat_logits[keep]
    log_probs = z - z.max(1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
    losses = -log_probs[np.arange(keep.sum()), flat_labels[keep]]
    w = np.ones_like(losses) if weights is None else np.asarray(weights)[flat_labels[keep]]
    return (losses * w).sum() / w.sum()


def setup(n=3, shape=(2, 5, 6)):
    rng = np.random.RandomState(0)
    logits = rng.randn(*shape, n).astype(np.float32)
    labels = rng.randint(0, n, shape)
    labels[rng.rand(*shape) < 0.3] = IGNORE_LABEL
    return logits, labels


def test_void_pixels_add_nothing():
    n = 3
    logits, labels = setup(n)
    x = tf.placeholder(tf.float32, logits.shape)
    loss = softmax_cross_entropy_ignore(x, tf.constant(labels), n)
    grad = tf.gradients(loss, x)[0]
    with tf.Session() as sess:
        value, g = sess.run([loss, grad], {x: logits})
        changed = logits.copy()
        changed[labels == IGNORE_LABEL] = 100.0  # wild scores where the label is void
        value2 = sess.run(loss, {x: changed})
    assert np.isclose(value, numpy_ce(logits, labels, n), rtol=1e-5)
    assert np.isclose(value, value2, rtol=1e-6)
    assert not g[labels == IGNORE_LABEL].any()
    assert g[labels != IGNORE_LABEL].any()


def test_class_weights_match_hand_computation():
    n = 3
    logits, labels = setup(n)
    weights = [0.5, 2.0, 1.0]
    loss = softmax_cross_entropy_ignore(tf.constant(logits), tf.constant(labels), n, weights)
    with tf.Session() as sess:
        assert np.isclose(sess.run(loss), numpy_ce(logits, labels, n, weights), rtol=1e-5)


def test_all_void_gives_zero_not_nan():
    logits = np.zeros((1, 4, 4, 2), np.float32)
    labels = np.full((1, 4, 4), IGNORE_LABEL)
    loss = softmax_cross_entropy_ignore(tf.constant(logits), tf.constant(labels), 2)
    with tf.Session() as sess:
        assert sess.run(loss) == 0.0
