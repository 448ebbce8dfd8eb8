"""Segmentation loss: softmax cross-entropy over labelled pixels only."""
import tensorflow.compat.v1 as tf


def softmax_cross_entropy_ignore(logits, labels, num_classes, class_weights=None):
    """Mean cross-entropy over pixels whose label is in [0, num_classes).

    Void/ignored pixels (IGNORE_LABEL, or any value outside the classes) add nothing to the loss
    or its gradient. With `class_weights` (num_classes floats) each pixel is weighted by its
    class, and the mean is the weighted mean.

    Args:
      logits: float [batch, h, w, num_classes]; labels: int [batch, h, w].
    Returns:
      scalar float32 loss (0 when no pixel is labelled).
    """
    labels = tf.cast(labels, tf.int32)
    valid = tf.logical_and(labels >= 0, labels < num_classes)
    safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
    weights = tf.cast(valid, tf.float32)
    if class_weights:
        weights *= tf.gather(tf.constant(class_weights, tf.float32), safe_labels)
    pixel_losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=safe_labels, logits=tf.cast(logits, tf.float32))  # [batch, h, w]
    total = tf.reduce_sum(pixel_losses * weights)
    return tf.div_no_nan(total, tf.reduce_sum(weights), name='cross_entropy')
