import numpy as np
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
