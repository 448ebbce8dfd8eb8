"""Operation counts per layer for any network of the factory at any input size.

FLOPs are counted as 2 x multiply-accumulates of convolutions (dense, depthwise and
transposed) and matrix products, at batch 1; batch norm, activations and additions are left
out, as in the usual deployment tables.

    rows = count_ops((320, 480), 7, model='mobilenet_v1_fcn', depth_multiplier=0.5)
"""
import math

import numpy as np
import tensorflow.compat.v1 as tf

from nets import build_network

COUNTED_OPS = ('Conv2D', 'DepthwiseConv2dNative', 'Conv2DBackpropInput', 'MatMul')


def _layer_name(op_name):
    """'MobilenetV1/Conv2d_1_depthwise/depthwise' -> 'Conv2d_1_depthwise'."""
    parts = op_name.split('/')[1:-1]
    return '/'.join(parts) or op_name


def _macs(op_type, input_shape, kernel_shape, output_shape):
    # Python ints: a VGG fc6 as one matmul is 49 x 25088 x 4096 MACs, past int32.
    input_shape, kernel_shape, output_shape = (
        [int(v) for v in shape] for shape in (input_shape, kernel_shape, output_shape))
    if op_type == 'Conv2D':
        return math.prod(output_shape[1:]) * math.prod(kernel_shape[:3])
    if op_type == 'DepthwiseConv2dNative':
        return math.prod(output_shape[1:]) * math.prod(kernel_shape[:2])
    if op_type == 'Conv2DBackpropInput':  # input_shape: the map being upsampled
        return math.prod(input_shape[1:]) * math.prod(kernel_shape[:2]) * kernel_shape[2]
    return input_shape[0] * input_shape[1] * kernel_shape[1]  # MatMul [m, k] x [k, n]


def _placeholder_weights(getter, name, shape=None, dtype=None, **_):
    """A custom getter that gives each variable as a placeholder of its shape: counting needs
    the shapes alone, and creating and initialising ~150 variables (MobileNet) was three
    quarters of the time a count took."""
    return tf.placeholder(dtype or tf.float32, shape, name=name.split('/')[-1])


def count_ops(input_size, num_classes, full_names=False, **network_args):
    """[(layer name, MFLOPs)] in graph order for one image of `input_size` (height, width);
    `network_args` (model=..., ...) go to nets.build_network. Layer names drop the network's
    scope ('conv1/conv1_1'), or keep it with `full_names` ('vgg_16/conv1/conv1_1').

    The shapes are read from the graph, built with placeholders for the variables; a shape
    known only when run (none of the factory's networks has one) is computed by a session.
    0.45 s per MobileNet FCN instead of 1.7 s with variables and a session (2 cores), the same
    figures.
    """
    graph, ops, tensors = counted_tensors(input_size, num_classes, **network_args)
    if all(t.shape.is_fully_defined() for group in tensors for t in group):
        shapes = [[t.shape.as_list() for t in group] for group in tensors]
    else:
        shapes = run_shapes(graph, tensors)
    rows = {}
    for op, (input_shape, kernel_shape, output_shape) in zip(ops, shapes):
        name = _layer_name(op.name)
        if full_names:
            name = '%s/%s' % (op.name.split('/')[0], name)
        rows[name] = rows.get(name, 0) + 2 * _macs(op.type, input_shape, kernel_shape,
                                                     output_shape) / 1e6
    return list(rows.items())


def counted_tensors(input_size, num_classes, **network_args):
    """The network in a graph of its own, its variables placeholders: (graph, the counted ops,
    [(input, kernel, output) tensor of each op])."""
    with tf.Graph().as_default() as graph:
        images = tf.placeholder(tf.float32, [1, input_size[0], input_size[1], 3])
        with tf.variable_scope(tf.get_variable_scope(), custom_getter=_placeholder_weights):
            build_network(images, num_classes, False, **network_args)
    ops = [op for op in graph.get_operations() if op.type in COUNTED_OPS]
    # Conv2DBackpropInput's inputs: (output shape, kernel, the map being upsampled).
    return graph, ops, [(op.inputs[2] if op.type == 'Conv2DBackpropInput' else op.inputs[0],
                         op.inputs[1], op.outputs[0]) for op in ops]


def run_shapes(graph, tensors):
    """The shapes of `tensors` ([(input, kernel, output)] per op) as a session computes them,
    every placeholder (the image, the weights) fed zeros."""
    feeds = {op.outputs[0]: np.zeros(op.outputs[0].shape, op.outputs[0].dtype.as_numpy_dtype)
             for op in graph.get_operations() if op.type == 'Placeholder'}
    with graph.as_default(), tf.Session() as session:
        return session.run([[tf.shape(t) for t in group] for group in tensors], feeds)


def budget(total_mflops, cameras, fps, budget_gops=None):
    """GOPS needed for `cameras` x `fps` images per second, and whether a budget holds."""
    needed = cameras * fps * total_mflops / 1000.0
    return {'images_per_second': cameras * fps, 'gops_needed': needed,
            'budget_gops': budget_gops,
            'fits': None if budget_gops is None else needed <= budget_gops}


def format_table(rows):
    """A fixed-width table: layer, MFLOPs, % of total, and the total."""
    total = sum(v for _, v in rows)
    width = max([len(n) for n, _ in rows] + [5])
    lines = ['%-*s %12s %7s' % (width, 'layer', 'MFLOPs', '%'), '-' * (width + 21)]
    lines += ['%-*s %12.1f %6.1f%%' % (width, name, value, 100 * value / total)
              for name, value in rows]
    lines += ['-' * (width + 21), '%-*s %12.1f %6.1f%%' % (width, 'total', total, 100.0)]
    return '\n'.join(lines)
