"""End-to-end alignment of every network path: a one-pixel line through one path alone must
come back centred on the line.

The backbone is made a pure "where" machine: every stride-1 convolution reduced to its centre
tap, every strided convolution a box filter over its taps (symmetric about its centre), every
1x1 mixing a channel mean, no biases, batch norm at identity. One score layer (the path under
test) takes the channel mean, the others are zero, and the upsamplings stay at their bilinear
initialisation. The response to a horizontal line at row r then has its centroid on r, averaged
over the r of one period of the path's stride (a symmetric system can only be off by a
constant shift, which this average measures). Before the MobileNet fix the stride-32, 16 and 8
paths measured -15.5, -7.5 and -3.5 px here; Inception's resized VALID maps 2.9 to 10.9 px.
"""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from nets import build_network
from nets.inputs import MEAN_RGB

# model -> [(path, score-layer variable scope, stride of the path's features)], coarse to fine
PATHS = {
    'fcn8s': [('fc7', 'fcn/score_fr', 32), ('pool4', 'fcn/score_pool4', 16),
              ('pool3', 'fcn/score_pool3', 8)],
    'mobilenet_v1_fcn8s': [('Conv2d_13', 'fcn/classifier', 32),
                           ('Conv2d_11', 'fcn/score_Conv2d_11_pointwise', 16),
                           ('Conv2d_5', 'fcn/score_Conv2d_5_pointwise', 8)],
    'inception_v3_fcn8s': [('Mixed_7c', 'fcn/score_fr', 32), ('Mixed_6e', 'fcn/score_Mixed_6e', 16),
                           ('Mixed_5d', 'fcn/score_Mixed_5d', 8)],
}
SETTINGS = {'fcn8s': {'fc_depth': 16}, 'mobilenet_v1_fcn8s': {'depth_multiplier': 0.25,
                                                              'classifier_depth': 16},
            'inception_v3_fcn8s': {'depth_multiplier': 0.1}}
UNIT_RANGE = ('mobilenet', 'inception')  # networks that map their input to [-1, 1] first
TOLERANCE = 0.5  # pixels
SUPPORT = 100  # rows either side of a line that its response may reach


def variable_of(tensor):
    """The variable a conv op's filter input reads (through Identity / ReadVariableOp / Cast)."""
    op = tensor.op
    while op.type not in ('VarHandleOp', 'VariableV2'):
        op = op.inputs[0].op
    return op.name


def strided_filters(graph):
    """Names of the variables used as filters of strided convolutions."""
    names = set()
    for op in graph.get_operations():
        if op.type in ('Conv2D', 'DepthwiseConv2dNative') and max(op.get_attr('strides')) > 1:
            names.add(variable_of(op.inputs[1]))
    return names


def where_machine_value(variable, strided, score_scope):
    """The value of `variable` in the backbone-as-geometry set-up of the module docstring."""
    name, shape = variable.op.name, variable.shape.as_list()
    if '/upscore' in name:
        return None  # bilinear initialisation
    if name.startswith('fcn/score') or name.startswith('fcn/classifier'):
        if name.endswith('weights') and name.startswith(score_scope + '/'):
            return np.full(shape, 1.0 / shape[2], np.float32)
        return np.zeros(shape, np.float32)
    if name.endswith('moving_variance') or name.endswith('gamma'):
        return np.ones(shape, np.float32)
    if len(shape) != 4:
        return np.zeros(shape, np.float32)  # biases, beta, gamma-less moving means
    kh, kw, c_in = shape[:3]
    taps = np.zeros((kh, kw), np.float32)
    if name in strided:
        taps[:] = 1.0 / (kh * kw)
    else:
        taps[kh // 2, kw // 2] = 1.0
    mixing = 1.0 if name.endswith('depthwise_weights') else 1.0 / c_in
    return taps[:, :, None, None] * np.full(shape, mixing, np.float32)


def line_images(model, height, width, rows):
    """One image per row r: background 0, the line 1, in the network's own input range."""
    lines = np.zeros((len(rows), height, width, 3), np.float32)
    for i, r in enumerate(rows):
        lines[i, r] = 1.0
    if model.startswith(UNIT_RANGE):  # to_unit_range(images) == lines
        return (lines + 1.0) * 127.5 - np.array(MEAN_RGB, np.float32)
    return lines * 50.0


def mean_shifts(model, height, width):
    """{path: centroid of the response minus the line's row, averaged over one period of the
    path's stride}."""
    with tf.Graph().as_default() as graph:
        images = tf.placeholder(tf.float32, [None, height, width, 3])
        logits, _ = build_network(images, 2, False, model, **SETTINGS[model])
        strided = strided_filters(graph)
        session = tf.Session()
        session.run(tf.global_variables_initializer())
        shifts = {}
        for path, score_scope, stride in PATHS[model]:
            for variable in tf.global_variables():
                value = where_machine_value(variable, strided, score_scope)
                if value is not None:
                    variable.load(value, session)
            start = (height // 2) // stride * stride
            rows = np.arange(start, start + stride)
            response = session.run(logits, {images: line_images(model, height, width, rows)})
            shifts[path] = centroid_shift(response[:, :, width // 2, 0], rows)
        session.close()
    return shifts


def centroid_shift(columns, rows):
    """Mean over lines of (centroid of column i near rows[i]) - rows[i]."""
    assert columns.min() > -1e-4 and np.all(columns.sum(1) > 0), 'no clean response'
    window = np.arange(columns.shape[1])
    shifts = []
    for column, r in zip(columns, rows):
        weights = column * (np.abs(window - r) < SUPPORT)  # the response, not the borders'
        shifts.append((weights * window).sum() / weights.sum() - r)
    return float(np.mean(shifts))


@pytest.mark.parametrize('model', sorted(PATHS))
@pytest.mark.parametrize('height', [352, 345])  # a multiple of 32 and an odd size
def test_every_path_puts_a_line_back_on_its_row(model, height):
    for path, shift in mean_shifts(model, height, 70).items():
        assert abs(shift) <= TOLERANCE, '%s path %s at height %d is off by %.2f px' % (
            model, path, height, shift)
