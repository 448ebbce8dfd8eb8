"""The input convention shared by every network here, and each backbone's conversion from it.

The suite feeds every network float RGB [batch, h, w, 3] minus MEAN_RGB (slim's
vgg_preprocessing), so one preprocessing serves training, evaluation and the exported models.
VGG16 takes that as it is; MobileNet v1 and Inception v3 checkpoints were trained on [-1, 1]
inputs, so those networks convert with `to_unit_range` as their first op.
"""
import tensorflow.compat.v1 as tf

MEAN_RGB = (123.68, 116.78, 103.94)  # RGB means subtracted from 0..255 inputs


def subtract_mean(images):
    """uint8/float RGB [..., 3] in 0..255 -> float32 minus MEAN_RGB (the networks' input)."""
    return tf.cast(images, tf.float32) - tf.constant(MEAN_RGB, tf.float32)


def to_unit_range(images):
    """The networks' input (RGB minus MEAN_RGB) -> RGB in [-1, 1] (MobileNet, Inception)."""
    return (images + tf.constant(MEAN_RGB, tf.float32)) / 127.5 - 1.0
