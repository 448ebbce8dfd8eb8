"""Segmentation loss: softmax cross-entropy over labelled pixels only."""
import tensorflow.compat.v1 as tf


def softmax_cross_entropy_ignore(logits, labels, num_classes, class_weights=None,
                                 normalization='mean', hard_pixel_fraction=1.0):
    """Cross-entropy over pixels whose label is in [0, num_classes).

    Void/ignored pixels (IGNORE_LABEL, or any value outside the classes) add nothing to the loss
    or its gradient. With `class_weights` (num_classes floats) each pixel is weighted by its
    class. `normalization` 'mean' divides by the (weighted) number of labelled pixels; 'sum'
    keeps the reference FCN recipe's unnormalised sum. With `hard_pixel_fraction` < 1 only that
    fraction of the labelled pixels with the highest loss counts (online hard-pixel mining).

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
    weighted = tf.reshape(pixel_losses * weights, [-1])
    weights = tf.reshape(weights, [-1])
    if hard_pixel_fraction < 1.0:
        num_valid = tf.reduce_sum(tf.cast(valid, tf.int32))
        k = tf.maximum(tf.cast(tf.cast(num_valid, tf.float32) * hard_pixel_fraction, tf.int32), 1)
        # Void pixels have loss 0 and so come last; the top k are the hardest labelled pixels.
        weighted, indices = tf.nn.top_k(weighted, k=tf.minimum(k, tf.size(weighted)))
        weights = tf.gather(weights, indices)
    total = tf.reduce_sum(weighted)
    if normalization == 'sum':
        return tf.identity(total, name='cross_entropy')
    return tf.div_no_nan(total, tf.reduce_sum(weights), name='cross_entropy')
