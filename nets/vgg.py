"""VGG16 (Simonyan & Zisserman) as a fully convolutional backbone, with tf-slim's variable names.

tf_slim's own `vgg_16` pads fc6 VALID, which fails on inputs under 224 px; here fc6/fc7 are
SAME-padded convolutions so any input works, while the variable names and shapes stay those of
the published `vgg_16.ckpt` (`vgg_16/conv1/conv1_1/weights`, ...,
`vgg_16/fc6/weights` 7x7x512x4096).
"""
import tensorflow.compat.v1 as tf
import tf_slim as slim

from nets.layers import conv2d_by_matmul

FC_DEPTH = 4096
OUTPUT_STRIDE = 32


def vgg_arg_scope(weight_decay=0.0005):
    """slim's VGG defaults: ReLU, L2 weight decay on weights, zero biases, SAME padding."""
    with slim.arg_scope([slim.conv2d, slim.conv2d_transpose, conv2d_by_matmul],
                        activation_fn=tf.nn.relu,
                        weights_regularizer=slim.l2_regularizer(weight_decay),
                        biases_initializer=tf.zeros_initializer()):
        with slim.arg_scope([slim.conv2d], padding='SAME') as arg_sc:
            return arg_sc


def vgg_16(inputs, num_classes=None, is_training=True, dropout_keep_prob=0.5,
           fc_depth=FC_DEPTH, scope='vgg_16'):
    """VGG16 up to fc7 (and fc8 as a 1x1 conv when num_classes is given).

    Args:
      inputs: float [batch, h, w, 3], RGB minus nets.inputs.MEAN_RGB.
    Returns:
      net: [batch, ceil(h/32), ceil(w/32), fc_depth] (fc7), or num_classes channels (fc8).
      end_points: dict keyed by scope name, e.g. 'vgg_16/pool3', 'vgg_16/pool4', 'vgg_16/fc7'.
    """
    with tf.variable_scope(scope, 'vgg_16', [inputs]) as sc:
        end_points_collection = sc.original_name_scope + '_end_points'
        with slim.arg_scope([slim.conv2d, conv2d_by_matmul, slim.max_pool2d],
                            outputs_collections=end_points_collection):
            net = inputs
            for block, (repeats, depth) in enumerate([(2, 64), (2, 128), (3, 256), (3, 512),
                                                      (3, 512)], 1):
                net = slim.repeat(net, repeats, slim.conv2d, depth, [3, 3],
                                  scope='conv%d' % block)
                net = slim.max_pool2d(net, [2, 2], padding='SAME', scope='pool%d' % block)
            # fc6/fc7 as matrix products: same variables, faster on CPUs (nets/layers.py).
            net = conv2d_by_matmul(net, fc_depth, [7, 7], scope='fc6')
            net = slim.dropout(net, dropout_keep_prob, is_training=is_training, scope='dropout6')
            net = conv2d_by_matmul(net, fc_depth, [1, 1], scope='fc7')
            net = slim.dropout(net, dropout_keep_prob, is_training=is_training, scope='dropout7')
            if num_classes:
                net = slim.conv2d(net, num_classes, [1, 1], activation_fn=None,
                                  normalizer_fn=None, scope='fc8')
        # Keyed 'vgg_16/pool4' whatever the enclosing scopes, and also when a reuse got the
        # name scope 'vgg_16_1'.
        name_scope = sc.original_name_scope
        end_points = {scope + '/' + key[len(name_scope):] if key.startswith(name_scope) else key:
                      value for key, value in
                      slim.utils.convert_collection_to_dict(end_points_collection).items()}
        return net, end_points
