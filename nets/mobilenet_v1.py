"""MobileNet v1 (Howard et al. 2017) with tf-slim's variable names, and its FCN heads.

Variable names match the published `mobilenet_v1_{1.0,0.75,0.5,0.25}_*.ckpt` files:
`MobilenetV1/Conv2d_0/weights`, `MobilenetV1/Conv2d_1_depthwise/depthwise_weights`,
`MobilenetV1/Conv2d_1_pointwise/weights`, each with `BatchNorm/{beta,gamma,moving_mean,
moving_variance}`. Inputs are padded to a multiple of 32 (SAME padding), so strides are exact.

Heads:
- `mobilenet_v1_fcn`: the embedded automotive head: depthwise conv (classifier_kernel) ->
  pointwise conv (classifier_depth) -> dropout -> 1x1 classifier -> transposed conv to the input
  size (kernel 64, stride 32 at the default final_endpoint), initialised bilinear.
- `mobilenet_v1_fcn(..., skips=True)` (model `mobilenet_v1_fcn8s`): the same head, then
  FCN-8s-style skips from the stride-16 (Conv2d_11_pointwise) and stride-8 (Conv2d_5_pointwise)
  endpoints.
"""
import collections

import tensorflow.compat.v1 as tf
import tf_slim as slim

from nets.batch_norm import batch_norm
from nets.fcn import (HEAD_SCOPE, LOGITS, crop_to_input, pad_to_multiple, upsample,
                      upsample_and_fuse)
from nets.inputs import to_unit_range

Conv = collections.namedtuple('Conv', ['kernel', 'stride', 'depth'])
DepthSepConv = collections.namedtuple('DepthSepConv', ['kernel', 'stride', 'depth'])

# slim's MOBILENETV1_CONV_DEFS: Conv2d_0 then 13 depthwise-separable layers.
CONV_DEFS = [
    Conv(3, 2, 32),
    DepthSepConv(3, 1, 64), DepthSepConv(3, 2, 128), DepthSepConv(3, 1, 128),
    DepthSepConv(3, 2, 256), DepthSepConv(3, 1, 256), DepthSepConv(3, 2, 512),
    DepthSepConv(3, 1, 512), DepthSepConv(3, 1, 512), DepthSepConv(3, 1, 512),
    DepthSepConv(3, 1, 512), DepthSepConv(3, 1, 512), DepthSepConv(3, 2, 1024),
    DepthSepConv(3, 1, 1024),
]
ENDPOINTS = ['Conv2d_0'] + ['Conv2d_%d_pointwise' % i for i in range(1, 14)]
FCN8S_SKIPS = (('Conv2d_11_pointwise', 16), ('Conv2d_5_pointwise', 8))


def settings_problem(model, final_endpoint):
    """What is wrong with the MobileNet settings of a config for `model` (a MobileNet FCN or
    another network, whose MobileNet settings are then unused), or None."""
    if not model.startswith('mobilenet_v1'):
        return None
    if final_endpoint not in ENDPOINTS:
        return 'final_endpoint must be one of %s, got %r' % (', '.join(ENDPOINTS), final_endpoint)
    if model == 'mobilenet_v1_fcn8s' and final_endpoint != ENDPOINTS[-1]:
        return ('model mobilenet_v1_fcn8s takes its skips below %s: leave final_endpoint at '
                'that, got %r' % (ENDPOINTS[-1], final_endpoint))
    return None
MIN_DEPTH = 8
OUTPUT_STRIDE = 32
SCOPE = 'MobilenetV1'


def mobilenet_v1_arg_scope(is_training=True, weight_decay=0.00004, decay=0.9997):
    """slim's MobileNet v1 defaults: batch norm (scaled), ReLU6, L2 on conv weights only."""
    bn_params = {'is_training': is_training, 'center': True, 'scale': True, 'decay': decay,
                 'epsilon': 0.001}
    with slim.arg_scope([slim.conv2d, slim.separable_conv2d],
                        weights_initializer=tf.truncated_normal_initializer(stddev=0.09),
                        activation_fn=tf.nn.relu6, normalizer_fn=batch_norm,
                        normalizer_params=bn_params, padding='SAME'):
        with slim.arg_scope([slim.conv2d], weights_regularizer=slim.l2_regularizer(weight_decay)):
            with slim.arg_scope([slim.separable_conv2d], weights_regularizer=None) as sc:
                return sc


def endpoint_stride(final_endpoint):
    """Output stride of the base network cut at `final_endpoint`."""
    if final_endpoint not in ENDPOINTS:
        raise ValueError('unknown final_endpoint %r; choose one of %s'
                         % (final_endpoint, ', '.join(ENDPOINTS)))
    stride = 1
    for i, conv in enumerate(CONV_DEFS[:ENDPOINTS.index(final_endpoint) + 1]):
        stride *= conv.stride
    return stride


def mobilenet_v1_base(inputs, final_endpoint='Conv2d_13_pointwise', depth_multiplier=1.0,
                      min_depth=MIN_DEPTH, scope=SCOPE):
    """MobileNet v1 up to `final_endpoint`. inputs: [batch, h, w, 3] in [-1, 1].

    Returns (net, end_points keyed 'Conv2d_0', 'Conv2d_1_depthwise', 'Conv2d_1_pointwise', ...).
    """
    if depth_multiplier <= 0:
        raise ValueError('depth_multiplier must be positive, got %r' % depth_multiplier)
    endpoint_stride(final_endpoint)  # validates the name

    def depth(d):
        return max(int(d * depth_multiplier), min_depth)

    end_points = {}
    with tf.variable_scope(scope, SCOPE, [inputs]):
        net = inputs
        for i, conv in enumerate(CONV_DEFS):
            if isinstance(conv, Conv):
                name = 'Conv2d_%d' % i
                net = slim.conv2d(net, depth(conv.depth), [conv.kernel, conv.kernel],
                                  stride=conv.stride, scope=name)
                end_points[name] = net
            else:
                name = 'Conv2d_%d_depthwise' % i
                net = slim.separable_conv2d(net, None, [conv.kernel, conv.kernel],
                                            depth_multiplier=1, stride=conv.stride, scope=name)
                end_points[name] = net
                name = 'Conv2d_%d_pointwise' % i
                net = slim.conv2d(net, depth(conv.depth), [1, 1], stride=1, scope=name)
                end_points[name] = net
            if name == final_endpoint:
                return net, end_points
    return net, end_points


def mobilenet_v1_fcn(images, num_classes, is_training=True, depth_multiplier=1.0,
                     final_endpoint='Conv2d_13_pointwise', classifier_kernel=7,
                     classifier_depth=1024, dropout_keep_prob=0.5, skips=False,
                     learn_upsampling=True, weight_decay=0.00004, batch_norm_decay=0.9997,
                     scope=HEAD_SCOPE):
    """MobileNet v1 FCN.

    Args:
      images: float [batch, h, w, 3], RGB minus nets.inputs.MEAN_RGB, any size.
      skips: fuse the stride-16 and stride-8 endpoints FCN-8s style (needs the default
        final_endpoint).
    Returns:
      logits [batch, h, w, num_classes], end_points.
    """
    stride = endpoint_stride(final_endpoint)
    padded = pad_to_multiple(to_unit_range(images), max(stride, OUTPUT_STRIDE))
    with slim.arg_scope(mobilenet_v1_arg_scope(is_training, weight_decay, batch_norm_decay)):
        net, end_points = mobilenet_v1_base(padded, final_endpoint, depth_multiplier)
        # Stride-2 SAME convolutions on inputs padded to a multiple of 32 put feature j of a
        # stride-s map on input row s*j + s - 1: the upsampling follows (nets/fcn.py).
        with tf.variable_scope(scope, HEAD_SCOPE, [net]), \
                slim.arg_scope([upsample], alignment='corner'):
            # 1. Depthwise-separable classifier conv: k x k depthwise, then 1x1 to the depth.
            net = slim.separable_conv2d(net, None, [classifier_kernel, classifier_kernel],
                                        depth_multiplier=1, scope='conv1_separable')
            net = slim.conv2d(net, classifier_depth, [1, 1], scope='conv1_pointwise')
            net = slim.dropout(net, dropout_keep_prob, is_training=is_training, scope='dropout')
            # 2. Class scores, then (optionally) skips, then upsampling to the input size.
            net = slim.conv2d(net, num_classes, [1, 1], activation_fn=None, normalizer_fn=None,
                              scope='classifier')
            if skips:
                if final_endpoint != 'Conv2d_13_pointwise':
                    raise ValueError('skips need final_endpoint Conv2d_13_pointwise')
                net = upsample_and_fuse(net, [(name, end_points[name])
                                              for name, _ in FCN8S_SKIPS],
                                        num_classes, learn_upsampling)
                stride = FCN8S_SKIPS[-1][1]
            net = upsample(net, num_classes, stride, learn_upsampling, 'upscore%d' % stride)
            logits = crop_to_input(net, images, num_classes)
    end_points[LOGITS] = logits
    return logits, end_points
