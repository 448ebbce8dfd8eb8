"""Layers written as matrix products, for the shapes where CPUs run them faster than the
convolution kernels, with the variable names and shapes of the slim layers they replace.

Both are exact (same arithmetic as the convolution, up to float summation order), forward and
backward, and every op in them has a cheap gradient (matmul, reshape, transpose, pad, slice,
concat).
"""
import contextlib

import tensorflow.compat.v1 as tf
import tf_slim as slim
from tensorflow.python.ops import math_grad, nn_grad  # TensorFlow's own gradients (fallbacks)

# Gradients computed by the kernels CPUs run fastest, registered under these names and used for
# the ops built inside forward_kernel_gradients(). Measured in the AVX2 class (oneDNN capped at
# AVX2, 2 cores, float32, batch 4, 224x224 VGG16 shapes), TensorFlow's own gradients ran at a
# fraction of the forward kernels' speed: Conv2DBackpropInput 40-160 GFLOP/s against 160-190
# for the same work as a forward convolution; fc6's input gradient, a MatMul with transpose_b
# of a 25088x4096 matrix, 38 GFLOP/s against 161 with the transposition moved to the small
# operand. On AVX-512 both ways run at the same speed.
CONV2D_GRADIENT = 'Conv2DInputGradientAsConvolution'
MATMUL_GRADIENT = 'MatMulGradientWithoutTransposedWeights'


@tf.RegisterGradient(CONV2D_GRADIENT)
def _conv2d_gradient(op, grad):
    """Conv2D's gradient; for stride 1, no dilation, SAME padding and an odd NHWC kernel, the
    input's part is the forward convolution of `grad` with the kernel flipped in space and its
    channels swapped (exactly the transposed convolution, whose padding is then symmetric)."""
    kernel = op.inputs[1]
    height, width = kernel.shape.as_list()[:2]
    if (op.get_attr('strides') != [1, 1, 1, 1] or op.get_attr('dilations') != [1, 1, 1, 1]
            or op.get_attr('padding') != b'SAME' or op.get_attr('data_format') != b'NHWC'
            or height is None or width is None or height % 2 == 0 or width % 2 == 0):
        return nn_grad._Conv2DGrad(op, grad)
    flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
    return [tf.nn.conv2d(grad, flipped, [1, 1, 1, 1], 'SAME'),
            tf.nn.conv2d_backprop_filter(op.inputs[0], tf.shape(kernel), grad, [1, 1, 1, 1],
                                         'SAME')]


@tf.RegisterGradient(MATMUL_GRADIENT)
def _matmul_gradient(op, grad):
    """MatMul's gradient for patches @ weights (conv2d_by_matmul, a few rows): without
    transposes, the gradient of `a` as (b @ grad^T)^T, so that only `grad` (rows x outputs,
    small) is read transposed, never the large weight matrix `b`."""
    if op.get_attr('transpose_a') or op.get_attr('transpose_b'):
        return math_grad._MatMulGrad(op, grad)
    a, b = op.inputs
    return [tf.transpose(tf.matmul(b, grad, transpose_b=True)),
            tf.matmul(a, grad, transpose_a=True)]


@contextlib.contextmanager
def forward_kernel_gradients():
    """Conv2D ops built inside take the gradient above (the same values up to the order of
    float sums). conv2d_by_matmul's product takes MATMUL_GRADIENT wherever it is built."""
    with tf.get_default_graph().gradient_override_map({'Conv2D': CONV2D_GRADIENT}):
        yield


@slim.add_arg_scope
def conv2d_by_matmul(inputs, num_outputs, kernel_size, activation_fn=tf.nn.relu,
                     weights_initializer=slim.xavier_initializer(),
                     weights_regularizer=None, biases_initializer=tf.zeros_initializer(),
                     trainable=True, outputs_collections=None, scope=None):
    """slim.conv2d (stride 1, SAME padding) as explicit patches times one weight matrix.

    For VGG's fc6 (7x7x512 -> 4096 on a map of a few pixels per side) and fc7 (1x1), where
    oneDNN's convolution kernels, and above all their backward passes, reach a fraction of the
    matrix-multiply peak: measured on a 2-core AVX512-BF16 CPU, fc6 forward+backward at
    batch 4 on a 7x7 map took 688 -> 420 ms (float32) and 625 -> 206 ms (bfloat16).
    The patches tensor is kernel_h * kernel_w times the input map, which is small at stride 32.
    Variables: `scope/weights` [kh, kw, c_in, num_outputs], `scope/biases` [num_outputs].
    """
    kh, kw = kernel_size
    with tf.variable_scope(scope, 'Conv', [inputs]) as sc:
        c_in = inputs.shape[-1]
        weights = slim.model_variable('weights', [kh, kw, c_in, num_outputs],
                                      initializer=weights_initializer,
                                      regularizer=weights_regularizer, trainable=trainable)
        shape = tf.shape(inputs)
        batch, height, width = shape[0], shape[1], shape[2]
        if (kh, kw) == (1, 1):
            patches = inputs
        else:  # SAME padding: (k - 1) // 2 before, the rest after.
            padded = tf.pad(inputs, [[0, 0], [(kh - 1) // 2, kh // 2], [(kw - 1) // 2, kw // 2],
                                     [0, 0]])
            # Channel order (dy, dx, c_in) is the row order of the reshaped [kh, kw, c_in, out].
            patches = tf.concat([tf.slice(padded, [0, dy, dx, 0], [-1, height, width, -1])
                                 for dy in range(kh) for dx in range(kw)], axis=3)
        with tf.get_default_graph().gradient_override_map({'MatMul': MATMUL_GRADIENT}):
            outputs = tf.matmul(tf.reshape(patches, [-1, kh * kw * c_in]),
                                tf.reshape(weights, [kh * kw * c_in, num_outputs]))
        if biases_initializer is not None:
            biases = slim.model_variable('biases', [num_outputs], initializer=biases_initializer,
                                         trainable=trainable)
            outputs = tf.nn.bias_add(outputs, biases)
        outputs = tf.reshape(outputs, [batch, height, width, num_outputs])
        if activation_fn is not None:
            outputs = activation_fn(outputs)
        return slim.utils.collect_named_outputs(outputs_collections, sc.name, outputs)


def transposed_conv_by_conv2d_transpose(net, weights, factor, offset=None):
    """The same as transposed_conv_by_matmul through tf.nn.conv2d_transpose (VALID, then the
    crop): slower on CPUs, but one builtin op of every runtime (TFLite's TRANSPOSE_CONV), where
    the matmul version's 6-D transposition is not."""
    f = factor
    shape = tf.shape(net)
    batch, height, width = shape[0], shape[1], shape[2]
    full = tf.nn.conv2d_transpose(
        net, weights, tf.stack([batch, (height + 1) * f, (width + 1) * f, weights.shape[2]]),
        strides=[1, f, f, 1], padding='VALID')
    offset = f // 2 if offset is None else offset
    return tf.slice(full, [0, offset, offset, 0], [-1, height * f, width * f, -1])


def transposed_conv_by_matmul(net, weights, factor, offset=None):
    """tf.nn.conv2d_transpose(net, weights, stride=factor, padding='SAME') for kernels of size
    2*factor, as one matrix product and one transposition.

    The output is the full transposed convolution cropped from `offset` (default SAME's
    factor // 2): input pixel i paints output rows i*factor - offset ... + 2*factor - 1.

    Output block (i, j) of factor x factor pixels is painted by inputs (i - a, j - b), a, b in
    {0, 1}, with quadrant (a, b) of the kernel: the four shifted copies of the (small) input,
    side by side in channels, times the four quadrant matrices stacked give every block at once,
    and one transposition lays the blocks out; only it and the crop touch the large output, and
    every op has a cheap gradient. For the few-channel, large-kernel transposed convolutions of
    FCN heads (e.g. 7 classes, kernel 64) this runs several times faster on CPUs than
    Conv2DBackpropInput. Measured in the AVX2 class against the former four matrix products and
    an overlap-add of padded 6-D blocks: MobileNet's x32 upsampling at 320x480, batch 1,
    4.6 -> 2.5 ms forward (ONNX model 52.9 -> 65 images/s); VGG's x8 at 224x224, batch 4,
    41 -> 25 ms forward+backward. (depth_to_space in place of the transposition is as fast in
    TensorFlow, but tf2onnx wraps it in two more transpositions.)
    net: [batch, h, w, c_in]; weights: [2f, 2f, c_out, c_in] -> [batch, h*f, w*f, c_out].
    """
    f = factor
    shape = tf.shape(net)
    batch, height, width = shape[0], shape[1], shape[2]
    c_in = net.shape[-1]
    c_out = weights.shape[2]
    # Rows (a, b, c_in) in the order of the shifted copies below; columns (y, x, c_out).
    quadrants = tf.transpose(tf.reshape(weights, [2, f, 2, f, c_out, c_in]), [0, 2, 5, 1, 3, 4])
    matrix = tf.reshape(quadrants, [4 * c_in, f * f * c_out])
    padded = tf.pad(net, [[0, 0], [1, 1], [1, 1], [0, 0]])
    shifted = tf.concat([tf.slice(padded, [0, 1 - a, 1 - b, 0], [-1, height + 1, width + 1, -1])
                         for a in (0, 1) for b in (0, 1)], axis=3)
    blocks = tf.reshape(tf.matmul(tf.reshape(shifted, [-1, 4 * c_in]), matrix),
                        [batch, height + 1, width + 1, f, f, c_out])
    # [batch, h+1, w+1, f, f, c] -> [batch, (h+1)*f, (w+1)*f, c], then the crop.
    full = tf.reshape(tf.transpose(blocks, [0, 1, 3, 2, 4, 5]),
                      [batch, (height + 1) * f, (width + 1) * f, c_out])
    offset = f // 2 if offset is None else offset
    return tf.slice(full, [0, offset, offset, 0], [-1, height * f, width * f, -1])
