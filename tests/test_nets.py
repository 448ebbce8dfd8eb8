import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from nets import build_network
from utils.upsampling import bilinear_kernel

SLIM_VGG16_CONV = ['vgg_16/conv%d/conv%d_%d/%s' % (b, b, i, kind)
                   for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for i in range(1, n + 1)
                   for kind in ('weights', 'biases')]


def build(model='fcn8s', num_classes=3, fc_depth=16, is_training=False):
    images = tf.placeholder(tf.float32, [None, None, None, 3])
    logits, end_points = build_network(images, num_classes, is_training, model,
                                       fc_depth=fc_depth)
    return images, logits, end_points


def test_variable_names_and_shapes_match_slim_vgg16():
    build(fc_depth=4096)
    shapes = {v.op.name: v.shape.as_list() for v in tf.global_variables()}
    for name in SLIM_VGG16_CONV:
        assert name in shapes, name
    assert len(SLIM_VGG16_CONV) == 26
    assert shapes['vgg_16/conv1/conv1_1/weights'] == [3, 3, 3, 64]
    assert shapes['vgg_16/fc6/weights'] == [7, 7, 512, 4096]
    assert shapes['vgg_16/fc7/weights'] == [1, 1, 4096, 4096]
    assert shapes['fcn/upscore2/weights'] == [4, 4, 3, 3]
    assert shapes['fcn/upscore8/weights'] == [16, 16, 3, 3]
    for name in ('fcn/score_fr/weights', 'fcn/score_pool4/weights', 'fcn/score_pool3/weights'):
        assert name in shapes


@pytest.mark.parametrize('model', ['fcn8s', 'fcn16s', 'fcn32s'])
def test_logits_have_the_input_size(model):
    images, logits, _ = build(model)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for h, w in [(32, 32), (33, 65), (361, 479), (100, 37)]:
            out = sess.run(logits, {images: np.zeros((1, h, w, 3), np.float32)})
            assert out.shape == (1, h, w, 3)


def test_head_initialisation():
    build()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        values = {v.op.name: sess.run(v) for v in tf.global_variables()}
    for name in ('fcn/score_fr/weights', 'fcn/score_pool4/weights', 'fcn/score_pool3/weights'):
        assert not values[name].any(), name
    np.testing.assert_allclose(values['fcn/upscore2/weights'], bilinear_kernel(4, 3))
    np.testing.assert_allclose(values['fcn/upscore_pool4/weights'], bilinear_kernel(4, 3))
    np.testing.assert_allclose(values['fcn/upscore8/weights'], bilinear_kernel(16, 3))


def test_reused_network_shares_weights():
    images, _, end_points = build()
    with tf.variable_scope(tf.get_variable_scope(), reuse=True):
        _, end_points2 = build_network(images, 3, False, fc_depth=16)
    assert 'vgg_16/pool4' in end_points and 'vgg_16/pool4' in end_points2
    assert len(tf.global_variables()) == len(set(tf.global_variables()))


def test_unknown_model_is_an_error():
    with pytest.raises(ValueError, match='fcn8s'):
        build('fcn4s')


@pytest.mark.parametrize('model', ['mobilenet_v1_fcn', 'inception_v3_fcn8s'])
def test_batch_norm_decay_sets_the_moving_average_step(model):
    """The first batch norm's moving mean starts at 0 and one update takes it to
    (1 - decay) * batch mean: decays 0.5 and 0.9 give a ratio of 5 on the same weights."""
    image = np.random.RandomState(0).uniform(-100, 100, (2, 64, 64, 3)).astype(np.float32)
    means = {}
    for decay in (0.5, 0.9):
        with tf.Graph().as_default():
            tf.set_random_seed(1)
            build_network(tf.constant(image), 3, True, model, depth_multiplier=0.25,
                          batch_norm_decay=decay)
            first = tf.moving_average_variables()[0]
            assert first.op.name.endswith('BatchNorm/moving_mean'), first.op.name
            with tf.Session() as sess:
                sess.run(tf.global_variables_initializer())
                sess.run(tf.get_collection(tf.GraphKeys.UPDATE_OPS))
                means[decay] = sess.run(first)
    assert np.abs(means[0.9]).max() > 1e-3
    np.testing.assert_allclose(means[0.5], 5 * means[0.9], rtol=1e-4, atol=1e-6)
