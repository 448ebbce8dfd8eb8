"""Inception v3 (tf_slim.nets.inception_v3) as an FCN backbone with selectable skips.

Variables keep slim's names (`InceptionV3/Conv2d_1a_3x3/weights`, `.../BatchNorm/beta`, ...;
batch norm without gamma, as in the published `inception_v3.ckpt`), through the suite's own
batch norm (slim.batch_norm fails on current TensorFlow). Inception pads VALID, so feature maps
are not exact fractions of the input: upsampled scores are resized to each skip's size and the
logits to the input's.
"""
import tensorflow.compat.v1 as tf
import tf_slim as slim
from tf_slim.nets import inception_v3

from nets.batch_norm import batch_norm
from nets.fcn import (HEAD_SCOPE, LOGITS, crop_to_input, resize_to, score, upsample,
                      upsample_and_fuse)
from nets.inputs import to_unit_range

# Skip endpoints by head, coarse to fine: Mixed_7c is at stride 32, Mixed_6e 16, Mixed_5d 8.
SKIPS = {'32s': (), '16s': ('Mixed_6e',), '8s': ('Mixed_6e', 'Mixed_5d')}
FINAL_ENDPOINT = 'Mixed_7c'
MIN_SIZE = 75  # Inception v3's VALID stem needs this many pixels; smaller inputs are padded


def inception_v3_fcn_arg_scope(is_training=True, weight_decay=0.00004):
    """slim's inception_v3_arg_scope with the suite's batch norm (no gamma, decay 0.9997)."""
    bn_params = {'is_training': is_training, 'decay': 0.9997, 'epsilon': 0.001,
                 'scale': False}
    with slim.arg_scope([slim.conv2d, slim.fully_connected],
                        weights_regularizer=slim.l2_regularizer(weight_decay)):
        with slim.arg_scope([slim.conv2d],
                            weights_initializer=slim.variance_scaling_initializer(),
                            activation_fn=tf.nn.relu, normalizer_fn=batch_norm,
                            normalizer_params=bn_params) as sc:
            return sc


def inception_v3_fcn(images, num_classes, is_training=True, skips='8s', dropout_keep_prob=0.8,
                     depth_multiplier=1.0, learn_upsampling=True, weight_decay=0.00004,
                     scope=HEAD_SCOPE):
    """Inception v3 FCN-32s/16s/8s.

    Args:
      images: float [batch, h, w, 3], RGB minus nets.inputs.MEAN_RGB (padded with the mean to at
        least MIN_SIZE).
      skips: '32s', '16s' or '8s'.
    Returns:
      logits [batch, h, w, num_classes], end_points.
    """
    if skips not in SKIPS:
        raise ValueError('skips must be one of %s, got %r' % (', '.join(SKIPS), skips))
    shape = tf.shape(images)
    padded = tf.pad(images, [[0, 0], [0, tf.maximum(MIN_SIZE - shape[1], 0)],
                             [0, tf.maximum(MIN_SIZE - shape[2], 0)], [0, 0]])
    with slim.arg_scope(inception_v3_fcn_arg_scope(is_training, weight_decay)):
        net, end_points = inception_v3.inception_v3_base(
            to_unit_range(padded), final_endpoint=FINAL_ENDPOINT,
            depth_multiplier=depth_multiplier)
        with tf.variable_scope(scope, HEAD_SCOPE, [net]):
            net = slim.dropout(net, dropout_keep_prob, is_training=is_training, scope='dropout')
            net = score(net, num_classes, 'score_fr')
            net = upsample_and_fuse(net, [(name, end_points[name]) for name in SKIPS[skips]],
                                    num_classes, learn_upsampling, exact=False)
            stride = 32 // 2 ** len(SKIPS[skips])
            net = upsample(net, num_classes, stride, learn_upsampling, 'upscore%d' % stride)
            logits = crop_to_input(resize_to(net, padded), images, num_classes)
    end_points[LOGITS] = logits
    return logits, end_points
