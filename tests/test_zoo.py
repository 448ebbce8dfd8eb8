"""The model zoo: shapes, slim variable names, initialisation, op counts, staged training."""
import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf
import tf_slim as slim

from nets import MODELS, build_network
from nets.mobilenet_v1 import mobilenet_v1_arg_scope, mobilenet_v1_base
from tests.conftest import ROOT
from utils.training.initialization import make_init_fn
from utils.config import resolve_config
from utils.deploy.operations import budget, count_ops, counted_tensors, run_shapes
from utils.training.trainer import train
from utils.upsampling import bilinear_kernel


def variable(name):
    return next(v for v in tf.global_variables() if v.op.name == name)


SMALL = {'fc_depth': 16, 'depth_multiplier': 0.25, 'classifier_depth': 32}
SIZES = {'inception': [(75, 75), (99, 131), (40, 90)], 'other': [(32, 32), (37, 61), (100, 33)]}


@pytest.mark.parametrize('model', MODELS)
def test_every_model_gives_logits_of_the_input_size(model):
    images = tf.placeholder(tf.float32, [None, None, None, 3])
    logits, _ = build_network(images, 3, False, model, **SMALL)
    sizes = SIZES['inception' if model.startswith('inception') else 'other']
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for h, w in sizes:
            out = sess.run(logits, {images: np.zeros((2, h, w, 3), np.float32)})
            assert out.shape == (2, h, w, 3), (model, h, w)


def test_mobilenet_names_match_the_published_checkpoints():
    images = tf.placeholder(tf.float32, [None, 224, 224, 3])
    build_network(images, 7, True, 'mobilenet_v1_fcn', depth_multiplier=0.5)
    shapes = {v.op.name: v.shape.as_list() for v in tf.global_variables()}
    assert shapes['MobilenetV1/Conv2d_0/weights'] == [3, 3, 3, 16]
    assert shapes['MobilenetV1/Conv2d_1_depthwise/depthwise_weights'] == [3, 3, 16, 1]
    assert shapes['MobilenetV1/Conv2d_13_pointwise/weights'] == [1, 1, 512, 512]
    for suffix in ('beta', 'gamma', 'moving_mean', 'moving_variance'):
        assert 'MobilenetV1/Conv2d_7_pointwise/BatchNorm/' + suffix in shapes
    base = [n for n in shapes if n.startswith('MobilenetV1/')]
    assert len(base) == 27 * 5  # 27 conv layers, each weights + 4 batch-norm variables
    assert shapes['fcn/conv1_separable/depthwise_weights'] == [7, 7, 512, 1]
    assert shapes['fcn/conv1_pointwise/weights'] == [1, 1, 512, 1024]
    assert shapes['fcn/upscore32/weights'] == [64, 64, 7, 7]


def test_inception_names_match_the_published_checkpoint():
    images = tf.placeholder(tf.float32, [None, 299, 299, 3])
    build_network(images, 5, True, 'inception_v3_fcn8s')
    names = {v.op.name for v in tf.global_variables()}
    assert 'InceptionV3/Conv2d_1a_3x3/weights' in names
    assert 'InceptionV3/Mixed_7c/Branch_3/Conv2d_0b_1x1/BatchNorm/moving_variance' in names
    assert not [n for n in names if n.endswith('BatchNorm/gamma')]  # slim's: scale=False
    assert {'fcn/score_Mixed_6e/weights', 'fcn/score_Mixed_5d/weights',
            'fcn/upscore8/weights'} <= names


def test_batch_norm_trains_its_moving_statistics():
    images = tf.random_normal([4, 64, 64, 3], mean=5.0)
    build_network(images, 3, True, 'mobilenet_v1_fcn', **SMALL)
    updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    assert updates
    mean = [v for v in tf.global_variables()
            if v.op.name == 'MobilenetV1/Conv2d_0/BatchNorm/moving_mean'][0]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(updates)
        assert np.abs(sess.run(mean)).sum() > 0


def test_mobilenet_upsampling_is_bilinear_and_at_once_scales_skips():
    images = tf.placeholder(tf.float32, [None, None, None, 3])
    build_network(images, 4, False, 'mobilenet_v1_fcn8s', **SMALL)
    with tf.variable_scope('at_once'):
        build_network(images, 4, False, 'fcn8s', fc_depth=16, at_once=True)
    graph = tf.get_default_graph()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        values = {v.op.name: sess.run(v) for v in tf.global_variables()}
    # MobileNet's features sit on 'corner' rows (nets/fcn.py ALIGNMENTS), VGG's on half pixels.
    np.testing.assert_allclose(values['fcn/upscore8/weights'], bilinear_kernel(16, 4, True))
    np.testing.assert_allclose(values['fcn/upscore2/weights'], bilinear_kernel(4, 4, True))
    np.testing.assert_allclose(values['at_once/fcn/upscore8/weights'], bilinear_kernel(16, 4))
    assert not values['fcn/score_Conv2d_11_pointwise/weights'].any()
    scales = {}
    for op in graph.get_operations():
        source = op.inputs[0].name if op.inputs else ''
        if (op.type == 'Mul' and op.name.startswith('at_once/')
                and source.split('/')[-2:-1] in (['pool3'], ['pool4'])):
            scales[source.split('/')[-2]] = tf.get_static_value(op.inputs[1])
    assert scales == {'pool4': pytest.approx(0.01), 'pool3': pytest.approx(0.0001)}


def test_ops_table_reproduces_the_classic_mobilenet_figures():
    rows = dict(count_ops((320, 480), 7, model='mobilenet_v1_fcn', depth_multiplier=0.5,
                          classifier_kernel=7, classifier_depth=1024))
    expected = {'Conv2d_0': 33.2, 'Conv2d_1_depthwise': 11.1, 'Conv2d_1_pointwise': 39.3,
                'Conv2d_2_depthwise': 5.5, 'Conv2d_3_pointwise': 78.6, 'Conv2d_4_depthwise': 2.8,
                'Conv2d_6_depthwise': 1.4, 'Conv2d_12_depthwise': 0.7,
                'Conv2d_13_pointwise': 78.6, 'conv1_separable': 7.5, 'conv1_pointwise': 157.3}
    for layer, mflops in expected.items():
        assert round(rows[layer], 1) == mflops, layer
    assert rows['classifier'] < 2.5
    verdict = budget(sum(rows.values()), cameras=4, fps=15, budget_gops=70)
    assert verdict['images_per_second'] == 60 and verdict['fits']


def test_vgg_fcn8s_flops_match_the_reference():
    total = sum(v for _, v in count_ops((224, 224), 21, model='fcn8s'))
    assert abs(total / 2000 - 21.3) < 0.2  # GMACs at 224x224, SAME-padded fc6


@pytest.mark.parametrize('model', ['fcn8s', 'mobilenet_v1_fcn8s', 'inception_v3_fcn8s'])
def test_ops_are_counted_from_the_shapes_a_session_computes(model):
    """count_ops reads the shapes from the graph, without variables or a session (4x faster):
    they must be those a run of the network gives, at a size no stride divides."""
    graph, ops, tensors = counted_tensors((77, 101), 3, model=model, **SMALL)
    assert ops and not graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)
    assert {op.type for op in ops} >= {'Conv2D'}
    static = [[t.shape.as_list() for t in group] for group in tensors]
    assert static == [[list(shape) for shape in group] for group in run_shapes(graph, tensors)]


def test_published_style_mobilenet_checkpoint_initialises_the_base(tmp_path):
    ckpt = str(tmp_path / 'mobilenet_v1_0.25_128.ckpt')
    with tf.Graph().as_default():
        images = tf.zeros([1, 128, 128, 3])
        with slim.arg_scope(mobilenet_v1_arg_scope(False)):
            net, _ = mobilenet_v1_base(images, depth_multiplier=0.25)
            with tf.variable_scope('MobilenetV1/Logits'):
                slim.conv2d(net, 1001, [1, 1], scope='Conv2d_1c_1x1')
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, ckpt)
            expected = sess.run(variable('MobilenetV1/Conv2d_3_pointwise/weights'))
    images = tf.placeholder(tf.float32, [None, None, None, 3])
    build_network(images, 7, True, 'mobilenet_v1_fcn', depth_multiplier=0.25)
    messages = []
    init_fn = make_init_fn(ckpt, tf.model_variables(), ['MobilenetV1/Logits'], messages.append)
    assert messages[0].startswith('Initialising 135 variables')
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        init_fn(sess)
        np.testing.assert_array_equal(
            sess.run(variable('MobilenetV1/Conv2d_3_pointwise/weights')), expected)


@pytest.mark.slow
@pytest.mark.parametrize('model,extra', [
    ('fcn16s', {}), ('mobilenet_v1_fcn', {'weight_decay': '0.00004'}),
    ('mobilenet_v1_fcn8s', {}), ('inception_v3_fcn16s', {})])
def test_each_model_trains_a_few_steps(model, extra, demo_records, tmp_path):
    overrides = dict({'dataset_train': demo_records[0], 'dataset_val': demo_records[1],
                      'output_dir': str(tmp_path / model), 'max_steps': '2', 'model': model,
                      'fc_depth': '16', 'depth_multiplier': '0.25', 'classifier_depth': '32',
                      'crop_size': '64,64', 'batch_size': '2', 'num_eval_images': '1',
                      'crf': 'false'}, **extra)
    with tf.Graph().as_default():
        summary = train(resolve_config(os.path.join(ROOT, 'configs', 'demo_fcn8s.yaml'), overrides),
                        log=lambda *_: None)
    assert summary['step'] == 2 and summary['validation']['num_images'] == 1


def test_staged_training_fcn32s_to_fcn16s(demo_records, tmp_path):
    base = {'dataset_train': demo_records[0], 'max_steps': '1', 'fc_depth': '16',
            'crop_size': '64,64', 'batch_size': '1'}
    config_path = os.path.join(ROOT, 'configs', 'demo_fcn8s.yaml')
    run32 = str(tmp_path / 'fcn32s')
    with tf.Graph().as_default():
        train(resolve_config(config_path, dict(base, model='fcn32s', output_dir=run32)),
              log=lambda *_: None)
    messages = []
    with tf.Graph().as_default():
        train(resolve_config(config_path, dict(
            base, model='fcn16s', output_dir=str(tmp_path / 'fcn16s'),
            checkpoint_path=os.path.join(run32, 'train'))), log=messages.append)
    init = next(m for m in messages if m.startswith('Initialising'))
    fresh = next(m for m in messages if m.startswith('Initialised fresh'))
    assert '32 variables' in init  # 26 conv + fc6, fc7 weights/biases + score_fr weights/biases
    assert 'fcn/score_pool4/weights' in fresh and 'fcn/upscore16/weights' in fresh
    assert 'fcn/score_fr' not in fresh


def test_published_style_inception_checkpoint_initialises_the_base(tmp_path):
    from tf_slim.nets import inception_v3
    from nets.inception_v3_fcn import inception_v3_fcn_arg_scope
    ckpt = str(tmp_path / 'inception_v3.ckpt')
    with tf.Graph().as_default():
        with slim.arg_scope(inception_v3_fcn_arg_scope(False)):
            net, _ = inception_v3.inception_v3_base(tf.zeros([1, 299, 299, 3]))
            with tf.variable_scope('InceptionV3/Logits'):
                slim.conv2d(net, 1001, [1, 1], scope='Conv2d_1c_1x1')
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, ckpt)
            base_count = len([v for v in tf.global_variables()
                              if not v.op.name.startswith('InceptionV3/Logits')])
    images = tf.placeholder(tf.float32, [None, None, None, 3])
    build_network(images, 5, True, 'inception_v3_fcn8s')
    messages = []
    make_init_fn(ckpt, tf.model_variables(), ['InceptionV3/Logits', 'InceptionV3/AuxLogits'],
                 messages.append)
    assert messages[0].startswith('Initialising %d variables' % base_count)
    assert 'fcn/score_fr/weights' in messages[1]
