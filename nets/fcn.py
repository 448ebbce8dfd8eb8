"""Fully Convolutional Networks (Long, Shelhamer & Darrell) on VGG16: FCN-32s, FCN-16s, FCN-8s.

Layer names follow the reference implementation: `score_fr`, `upscore2`, `score_pool4`,
`upscore_pool4`, `score_pool3`, `upscore8`. Score layers start at zero and transposed
convolutions start as bilinear upsampling, so an untrained head upsamples coarse scores smoothly.

Instead of the reference's 100-pixel input padding and crop, the input is padded (with the mean,
i.e. zeros after mean subtraction) to a multiple of 32, and the logits are cropped back: the output
is exactly the input's height x width for any size.
"""
import tensorflow.compat.v1 as tf
import tf_slim as slim

from nets.layers import transposed_conv_by_conv2d_transpose, transposed_conv_by_matmul
from nets.vgg import FC_DEPTH, OUTPUT_STRIDE, vgg_16
from utils.upsampling import bilinear_kernel, upsample_kernel_size

# Skip layers fused by each head, from coarse to fine, and the "at-once" input scaling of each.
SKIPS = {'fcn32s': (), 'fcn16s': ('pool4',), 'fcn8s': ('pool4', 'pool3')}
AT_ONCE_SCALES = {'pool4': 0.01, 'pool3': 0.0001}
# Where feature j of a stride-s map sits on the input's pixel rows (and columns), which fixes
# how its scores are upsampled: 'half_pixel', at s*j + (s - 1) / 2, the centre of the s pixels
# it covers (max pooling, VGG); 'corner', at s*j + s - 1 (stride-2 SAME convolutions on even
# sizes pad only after, so output i is centred on input 2i + 1: MobileNet).
ALIGNMENTS = ('half_pixel', 'corner')
HEAD_SCOPE = 'fcn'  # variable scope of every network's head (not in classification checkpoints)
LOGITS = 'logits'  # end_points key of every network's logits


@slim.add_arg_scope
def upsample(net, num_classes, factor, trainable, scope, weights_regularizer=None,
             alignment='half_pixel', portable=False):
    """Transposed conv (kernel 2*factor, stride factor) initialised as bilinear upsampling.

    [batch, h, w, num_classes] -> [batch, h*factor, w*factor, num_classes]; no bias, as in FCN.
    The variable is slim.conv2d_transpose's (`SCOPE/weights`, [k, k, out, in]). `alignment`
    (ALIGNMENTS) is where the input's features sit: 'half_pixel' is conv2d_transpose SAME;
    'corner' centres a (2*factor - 1)-tap filter on feature j's row j*factor + factor - 1.
    `portable` computes the same with conv2d_transpose (for TFLite) instead of matmuls.
    """
    if alignment not in ALIGNMENTS:
        raise ValueError('alignment must be one of %s, got %r' % (ALIGNMENTS, alignment))
    size = upsample_kernel_size(factor)
    corner = alignment == 'corner'
    with tf.variable_scope(scope, 'upsample', [net]):
        weights = slim.model_variable(
            'weights', [size, size, num_classes, net.shape[-1]],
            initializer=tf.constant_initializer(bilinear_kernel(size, num_classes, corner)),
            regularizer=weights_regularizer, trainable=trainable)
        transposed_conv = (transposed_conv_by_conv2d_transpose if portable
                           else transposed_conv_by_matmul)
        return transposed_conv(net, weights, factor, 0 if corner else None)


def score(net, num_classes, scope):
    """1x1 class-score layer, zero-initialised as in the reference recipe."""
    return slim.conv2d(net, num_classes, [1, 1], activation_fn=None, normalizer_fn=None,
                       weights_initializer=tf.zeros_initializer(), scope=scope)


def pad_to_multiple(images, multiple):
    """Pads [batch, h, w, c] at the bottom/right with zeros to multiples of `multiple`."""
    shape = tf.shape(images)
    pad_h = (multiple - shape[1] % multiple) % multiple
    pad_w = (multiple - shape[2] % multiple) % multiple
    return tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])


def upsample_and_fuse(net, skips, num_classes, learn_upsampling=True):
    """The FCN skip architecture: 2x upsample the scores, add the scores of a finer layer, repeat.

    Args:
      net: coarse class scores [batch, h, w, num_classes].
      skips: [(name, features)] from coarse to fine, each at twice the previous resolution
        (e.g. [('pool4', ...), ('pool3', ...)]); scored by zero-initialised `score_NAME`.
    Returns:
      fused scores at the finest skip's resolution.
    """
    upscore_name = 'upscore2'
    for name, features in skips:
        net = upsample(net, num_classes, 2, learn_upsampling, upscore_name)
        skip_score = score(features, num_classes, 'score_' + name)
        net = tf.add(net, skip_score, name='fuse_' + name)
        upscore_name = 'upscore_' + name
    return net


def fcn(images, num_classes, is_training=True, model='fcn8s', dropout_keep_prob=0.5,
        fc_depth=FC_DEPTH, at_once=False, learn_upsampling=True, scope=HEAD_SCOPE):
    """FCN on VGG16.

    Args:
      images: float [batch, h, w, 3], RGB minus nets.inputs.MEAN_RGB; h, w >= 1, any size.
      model: 'fcn32s', 'fcn16s' or 'fcn8s' (which skips are fused).
      at_once: scale pool4 by 0.01 and pool3 by 0.0001 before scoring (FCN-8s at-once).
      learn_upsampling: whether the transposed convolutions are trained or fixed bilinear.
    Returns:
      logits: [batch, h, w, num_classes]; end_points: VGG's and the head's activations.
    """
    if model not in SKIPS:
        raise ValueError('unknown model %r; choose one of %s' % (model, ', '.join(SKIPS)))
    padded = pad_to_multiple(images, OUTPUT_STRIDE)
    net, end_points = vgg_16(padded, None, is_training, dropout_keep_prob, fc_depth)
    skips = [(name, end_points['vgg_16/' + name]) for name in SKIPS[model]]
    if at_once:
        skips = [(name, features * AT_ONCE_SCALES[name]) for name, features in skips]
    with tf.variable_scope(scope, HEAD_SCOPE, [net]):
        net = score(net, num_classes, 'score_fr')  # [batch, H/32, W/32, num_classes]
        net = upsample_and_fuse(net, skips, num_classes, learn_upsampling)
        stride = OUTPUT_STRIDE // 2 ** len(skips)
        net = upsample(net, num_classes, stride, learn_upsampling, 'upscore%d' % stride)
        logits = crop_to_input(net, images, num_classes)
        end_points[LOGITS] = logits
    return logits, end_points


def crop_to_input(net, images, num_classes):
    """Crops [batch, H', W', n] (H' >= h) to the input's [batch, h, w, n]."""
    input_shape = tf.shape(images)
    logits = net[:, :input_shape[1], :input_shape[2], :]
    logits.set_shape(images.shape[:3].concatenate([num_classes]))
    return logits
