"""Inception v3 (tf_slim.nets.inception_v3) as an FCN backbone with selectable skips.

Variables keep slim's names (`InceptionV3/Conv2d_1a_3x3/weights`, `.../BatchNorm/beta`, ...;
batch norm without gamma, as in the published `inception_v3.ckpt`), through the suite's own
batch norm (slim.batch_norm fails on current TensorFlow).

Geometry: Inception's VALID stem and stride-2 VALID reductions put feature j of Mixed_5d,
Mixed_6e and Mixed_7c (strides 8, 16, 32) on input rows 8j + 13, 16j + 21 and 32j + 37. Padding
the input by ALIGN_PAD = 6 rows/columns at the top/left moves them to 8j + 7, 16j + 15 and
32j + 31: every path on 'corner' alignment (nets/fcn.py), the same as MobileNet. Padding the
bottom/right to 32*N + 43 in all (N = ceil(h / 32)) gives Mixed_7c exactly N features and the
skips 2N + 1 and 4N + 3, cropped to 2N and 4N: the maps fuse exactly, with no resizing.
"""
import tensorflow.compat.v1 as tf
import tf_slim as slim
from tf_slim.nets import inception_v3

from nets.batch_norm import batch_norm
from nets.fcn import HEAD_SCOPE, LOGITS, crop_to_input, score, upsample, upsample_and_fuse
from nets.inputs import to_unit_range

# Skip endpoints by head, coarse to fine: Mixed_7c is at stride 32, Mixed_6e 16, Mixed_5d 8.
SKIPS = {'32s': (), '16s': ('Mixed_6e',), '8s': ('Mixed_6e', 'Mixed_5d')}
FINAL_ENDPOINT = 'Mixed_7c'
OUTPUT_STRIDE = 32
ALIGN_PAD = 6  # top/left padding that puts every path's features on 'corner' rows
VALID_LOSS = 43  # rows the VALID stages need beyond 32 per stride-32 feature (incl. ALIGN_PAD)


def inception_v3_fcn_arg_scope(is_training=True, weight_decay=0.00004,
                               batch_norm_decay=0.9997):
    """slim's inception_v3_arg_scope with the suite's batch norm (no gamma)."""
    bn_params = {'is_training': is_training, 'decay': batch_norm_decay, 'epsilon': 0.001,
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
                     batch_norm_decay=0.9997, scope=HEAD_SCOPE):
    """Inception v3 FCN-32s/16s/8s.

    Args:
      images: float [batch, h, w, 3], RGB minus nets.inputs.MEAN_RGB, any size (padded with
        the mean, see the module docstring).
      skips: '32s', '16s' or '8s'.
    Returns:
      logits [batch, h, w, num_classes], end_points.
    """
    if skips not in SKIPS:
        raise ValueError('skips must be one of %s, got %r' % (', '.join(SKIPS), skips))
    padded, features = aligned_padding(images)
    scope_args = inception_v3_fcn_arg_scope(is_training, weight_decay, batch_norm_decay)
    with slim.arg_scope(scope_args):
        net, end_points = inception_v3.inception_v3_base(
            to_unit_range(padded), final_endpoint=FINAL_ENDPOINT,
            depth_multiplier=depth_multiplier)
        with tf.variable_scope(scope, HEAD_SCOPE, [net]), \
                slim.arg_scope([upsample], alignment='corner'):
            net = slim.dropout(net, dropout_keep_prob, is_training=is_training, scope='dropout')
            net = score(net, num_classes, 'score_fr')
            skip_maps = [(name, first_features(end_points[name], features * 2 ** (i + 1)))
                         for i, name in enumerate(SKIPS[skips])]
            net = upsample_and_fuse(net, skip_maps, num_classes, learn_upsampling)
            stride = OUTPUT_STRIDE // 2 ** len(SKIPS[skips])
            net = upsample(net, num_classes, stride, learn_upsampling, 'upscore%d' % stride)
            logits = crop_to_input(net, images, num_classes)
    end_points[LOGITS] = logits
    return logits, end_points


def aligned_padding(images):
    """Pads [batch, h, w, 3] with zeros (the mean) to the geometry of the module docstring.

    Returns (padded images, [N_h, N_w]: the stride-32 features that cover the input)."""
    size = tf.shape(images)[1:3]
    features = (size + OUTPUT_STRIDE - 1) // OUTPUT_STRIDE
    after = OUTPUT_STRIDE * features + VALID_LOSS - ALIGN_PAD - size
    return tf.pad(images, [[0, 0], [ALIGN_PAD, after[0]], [ALIGN_PAD, after[1]], [0, 0]]), features


def first_features(net, count):
    """The first count[0] x count[1] features of [batch, h, w, c]."""
    return net[:, :count[0], :count[1], :]
