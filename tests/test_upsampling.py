import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from utils.upsampling import bilinear_filter, bilinear_kernel, upsample_kernel_size


def caffe_upsample_filt(size):
    """The FCN reference implementation's surgery.upsample_filt, written independently."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


def test_filter_matches_reference():
    for size in (3, 4, 5, 16, 32, 64):
        np.testing.assert_allclose(bilinear_filter(size), caffe_upsample_filt(size))


def test_known_values_of_4x4():
    row = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(bilinear_filter(4), np.outer(row, row))


def test_kernel_is_diagonal_in_classes():
    kernel = bilinear_kernel(4, 3)
    assert kernel.shape == (4, 4, 3, 3)
    for i in range(3):
        for j in range(3):
            expected = bilinear_filter(4) if i == j else np.zeros((4, 4))
            np.testing.assert_allclose(kernel[:, :, i, j], expected)


def test_transposed_conv_interpolates_linearly():
    """2x upsampling of a horizontal ramp is a ramp away from the border, class by class."""
    factor = 2
    size = upsample_kernel_size(factor)
    ramp = np.tile(np.arange(8, dtype=np.float32), (8, 1))
    x = np.stack([ramp, 10 - ramp], -1)[None]  # [1, 8, 8, 2]
    out = tf.nn.conv2d_transpose(x, bilinear_kernel(size, 2), [1, 16, 16, 2], [1, 2, 2, 1],
                                 padding='SAME')
    with tf.Session() as sess:
        y = sess.run(out)[0]
    interior = y[4:-4, 4:-4, 0]
    steps = np.diff(interior, axis=1)
    np.testing.assert_allclose(steps, 0.5, atol=1e-5)
    np.testing.assert_allclose(y[4:-4, 4:-4, 0] + y[4:-4, 4:-4, 1], 10, atol=1e-4)


def test_matmul_transposed_conv_equals_conv2d_transpose_forward_and_backward():
    from nets.layers import transposed_conv_by_matmul
    rng = np.random.RandomState(0)
    for factor, (h, w), c_in, c_out in [(2, (3, 5), 3, 3), (8, (2, 3), 4, 2), (32, (2, 1), 5, 7)]:
        x = tf.constant(rng.randn(2, h, w, c_in).astype(np.float32))
        k = tf.constant(rng.randn(2 * factor, 2 * factor, c_out, c_in).astype(np.float32))
        ours = transposed_conv_by_matmul(x, k, factor)
        reference = tf.nn.conv2d_transpose(x, k, [2, h * factor, w * factor, c_out],
                                           [1, factor, factor, 1], padding='SAME')
        g = tf.constant(rng.randn(2, h * factor, w * factor, c_out).astype(np.float32))
        grads = tf.gradients(tf.reduce_sum(ours * g), [x, k])
        ref_grads = tf.gradients(tf.reduce_sum(reference * g), [x, k])
        with tf.Session() as sess:
            a, b, ga, gb = sess.run([ours, reference, grads, ref_grads])
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
        for ours_grad, ref_grad in zip(ga, gb):
            np.testing.assert_allclose(ours_grad, ref_grad, rtol=1e-3, atol=1e-3)


def test_matmul_conv2d_equals_slim_conv2d_forward_and_backward():
    """fc6/fc7 as matrix products: the same variables as slim.conv2d, the same outputs and
    gradients, the same weight-decay loss, end point and model variables."""
    import tf_slim as slim
    from nets.layers import conv2d_by_matmul
    rng = np.random.RandomState(0)
    for kernel, (h, w) in [((7, 7), (3, 5)), ((7, 7), (9, 8)), ((1, 1), (4, 2)), ((4, 3), (5, 6))]:
        with tf.Graph().as_default():
            x = tf.constant(rng.randn(2, h, w, 6).astype(np.float32))
            common = dict(weights_regularizer=slim.l2_regularizer(0.5),
                          biases_initializer=tf.random_normal_initializer())
            ours = conv2d_by_matmul(x, 5, kernel, scope='ours', outputs_collections='ends',
                                    **common)
            reference = slim.conv2d(x, 5, kernel, scope='reference', **common)
            ours_vars = [v.op.name for v in slim.get_model_variables('ours')]
            assert ours_vars == ['ours/weights', 'ours/biases']
            assert tf.get_collection('ends')[0].aliases == ['ours']
            assert len(tf.losses.get_regularization_losses()) == 2
            variables = [slim.get_model_variables(s) for s in ('ours', 'reference')]
            with tf.Session() as sess:
                sess.run(tf.global_variables_initializer())
                for mine, theirs in zip(*variables):  # the same starting values
                    sess.run(mine.assign(theirs))
                g = tf.constant(rng.randn(2, h, w, 5).astype(np.float32))
                grads = [tf.gradients(tf.reduce_sum(y * g), [x] + v)
                         for y, v in zip((ours, reference), variables)]
                a, b, ga, gb = sess.run([ours, reference] + grads)
                assert a.shape == b.shape == (2, h, w, 5)
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
                for ours_grad, ref_grad in zip(ga, gb):
                    np.testing.assert_allclose(ours_grad, ref_grad, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize('kernel, stride, padding', [
    (3, 1, 'SAME'), (1, 1, 'SAME'), (5, 1, 'SAME'),  # the input gradient as a convolution
    (3, 2, 'SAME'), (3, 1, 'VALID'), (4, 1, 'SAME')])  # TensorFlow's own gradient
def test_forward_kernel_gradients_equal_tensorflows(kernel, stride, padding):
    """Conv2D built under forward_kernel_gradients: the same gradients as TensorFlow's, with
    no Conv2DBackpropInput where the input's gradient is a forward convolution."""
    import tf_slim as slim
    from nets.layers import forward_kernel_gradients
    rng = np.random.RandomState(0)
    x = tf.constant(rng.randn(2, 9, 11, 6).astype(np.float32))
    with forward_kernel_gradients():
        ours = slim.conv2d(x, 5, kernel, stride, padding, scope='ours', activation_fn=None)
    reference = slim.conv2d(x, 5, kernel, stride, padding, scope='reference',
                            activation_fn=None)
    variables = [slim.get_model_variables(s) for s in ('ours', 'reference')]
    g = tf.constant(rng.randn(*ours.shape.as_list()).astype(np.float32))
    grads = [tf.gradients(tf.reduce_sum(y * g), [x] + v) for y, v in zip((ours, reference),
                                                                         variables)]
    backprop_input = [op for op in tf.get_default_graph().get_operations()
                      if op.type == 'Conv2DBackpropInput' and 'ours' in op.name]
    assert bool(backprop_input) == (stride != 1 or padding != 'SAME' or kernel % 2 == 0)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for mine, theirs in zip(*variables):
            sess.run(mine.assign(theirs))
        ga, gb = sess.run(grads)
    for ours_grad, ref_grad in zip(ga, gb):
        np.testing.assert_allclose(ours_grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_every_network_trains_with_forward_kernel_gradients():
    """build_network puts its stride-1 convolutions under forward_kernel_gradients: VGG's
    backward pass has no Conv2DBackpropInput, and fc6's input gradient reads no weight matrix
    transposed."""
    from nets import build_network
    logits, _ = build_network(tf.zeros([1, 64, 64, 3]), 3, True, model='fcn8s', fc_depth=8)
    tf.gradients(tf.reduce_sum(logits), tf.trainable_variables())
    ops = tf.get_default_graph().get_operations()
    assert not [op.name for op in ops if op.type == 'Conv2DBackpropInput']
    fc6 = [op for op in ops if op.type == 'MatMul' and op.name.startswith('gradients/vgg_16/fc6')]
    read_transposed = [op.inputs[1] for op in fc6 if op.get_attr('transpose_b')]
    assert fc6 and read_transposed
    assert all(t.shape[0] != 7 * 7 * 512 for t in read_transposed)  # not the weight matrix


def feature_rows(stride, count, alignment):
    """Input rows of features 0..count-1 of a stride-`stride` map (nets/fcn.py ALIGNMENTS)."""
    offset = (stride - 1) / 2 if alignment == 'half_pixel' else stride - 1
    return stride * np.arange(count, dtype=np.float32) + offset


@pytest.mark.parametrize('endpoint, stride', [('Conv2d_5_pointwise', 8),
                                              ('Conv2d_11_pointwise', 16),
                                              ('Conv2d_13_pointwise', 32)])
def test_mobilenet_strided_layers_put_features_on_corner_rows(endpoint, stride):
    """MobileNet's stride-2 SAME convolutions, each reduced to its centre tap, on a ramp of
    row numbers: feature j reads row stride*j + stride - 1 ('corner')."""
    from nets.mobilenet_v1 import CONV_DEFS, ENDPOINTS
    size = 96
    net = tf.constant(np.arange(size, dtype=np.float32)[None, :, None, None]
                      * np.ones((1, 1, size, 1), np.float32))
    for conv in CONV_DEFS[:ENDPOINTS.index(endpoint) + 1]:
        centre = np.zeros((conv.kernel, conv.kernel, 1, 1), np.float32)
        centre[conv.kernel // 2, conv.kernel // 2] = 1
        net = tf.nn.depthwise_conv2d(net, centre, [1, conv.stride, conv.stride, 1], 'SAME')
    with tf.Session() as session:
        rows = session.run(net)[0, :, 0, 0]
    np.testing.assert_array_equal(rows, feature_rows(stride, size // stride, 'corner'))


@pytest.mark.parametrize('alignment', ['half_pixel', 'corner'])
@pytest.mark.parametrize('factor', [2, 8, 16, 32])
def test_upsampling_puts_each_feature_back_on_its_rows(alignment, factor):
    """A ramp of the features' own row numbers, upsampled at the bilinear initialisation,
    gives every output row its own number (away from the borders): no shift on any path."""
    from nets.fcn import upsample
    count = 6
    rows = feature_rows(factor, count, alignment)
    scores = tf.constant(rows[None, :, None, None] * np.ones((1, 1, count, 1), np.float32))
    out = upsample(scores, 1, factor, False, 'upscore', alignment=alignment)
    with tf.Session() as session:
        session.run(tf.global_variables_initializer())
        column = session.run(out)[0, :, (count // 2) * factor, 0]  # an interior column
    interior = np.arange(factor, (count - 1) * factor)
    np.testing.assert_allclose(column[interior], interior, atol=1e-4)


@pytest.mark.parametrize('offset', [None, 0])
@pytest.mark.parametrize('factor', [2, 8])
def test_the_portable_transposed_conv_equals_the_matmul_one(factor, offset):
    from nets.layers import transposed_conv_by_conv2d_transpose, transposed_conv_by_matmul
    rng = np.random.RandomState(factor)
    x = tf.constant(rng.randn(2, 5, 7, 3).astype(np.float32))
    k = tf.constant(rng.randn(2 * factor, 2 * factor, 4, 3).astype(np.float32))
    with tf.Session() as session:
        ours, portable = session.run([transposed_conv_by_matmul(x, k, factor, offset),
                                      transposed_conv_by_conv2d_transpose(x, k, factor, offset)])
    assert portable.shape == (2, 5 * factor, 7 * factor, 4)
    np.testing.assert_allclose(portable, ours, rtol=1e-4, atol=1e-4)
