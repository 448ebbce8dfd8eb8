import glob
import os
import re

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from nets import build_network
from tests.conftest import DEMO_NUM_CLASSES, ROOT, run_script
from utils.config import resolve_config
from utils.errors import CheckpointError, ConfigError
from utils.training.initialization import make_init_fn
from utils.training.trainer import train
from utils.visualization import SAMPLE_KINDS

FAST = ['--config', os.path.join(ROOT, 'configs', 'demo_fcn8s.yaml'), '--fc_depth', '16',
        '--batch_size', '2', '--crop_size', '64,64', '--log_every', '1']


def run_train(*args):
    return run_script('train.py', *FAST, *args)


def test_short_run_writes_checkpoints_and_jpegs_then_resumes(demo_records, tmp_path):
    train_rec, val_rec = demo_records
    out = str(tmp_path / 'run')
    args = ['--dataset_train', train_rec, '--dataset_val', val_rec, '--output_dir', out,
            '--save_every', '2', '--eval_every', '2', '--num_eval_images', '2']
    code, log = run_train(*(args + ['--max_steps', '4']))
    assert code == 0, log
    # The log starts with a line a reader takes in, not the whole config, and says where that is.
    first = log.strip().split('\n')[0]
    assert len(first) < 300 and re.search(
        r'Training fcn8s \(fc_depth 16, .*\) on 4 classes \(demo\): 4 steps of batch 2, crops '
        r'64x64, precision ', first), first
    assert 'Full config (every key; train.py --help explains each): %s/config.yaml' % out in log
    assert "'class_colors'" not in log
    assert re.search(r'step 4 Current Loss: \d+\.\d+', log)
    assert re.search(r'\[\d+\.\d+\] imgs/s', log)
    assert 'Model saved in file: %s/train/model.ckpt-4' % out in log
    assert os.path.exists(os.path.join(out, 'train', 'model.ckpt-2.index'))
    assert os.path.exists(os.path.join(out, 'config.yaml'))
    for step in (2, 4):
        for k in range(2):
            for kind in SAMPLE_KINDS:
                path = os.path.join(out, 'eval', 'val_%d_%d_%s.jpg' % (step, k, kind))
                assert os.path.getsize(path) > 0, path
    assert 'mIoU' in log and 'with CRF' in log
    assert len(open(os.path.join(out, 'eval', 'metrics.jsonl')).readlines()) == 2
    # A rerun with the same output dir resumes at the saved step.
    code, log = run_train(*(args + ['--max_steps', '6']))
    assert code == 0, log
    assert 'Resumed from %s/train/model.ckpt-4 at step 4' % out in log
    assert 'step 5 Current Loss' in log and 'step 1 Current Loss' not in log
    assert os.path.exists(os.path.join(out, 'train', 'model.ckpt-6.index'))


def test_single_eval_image_has_no_index(demo_records, tmp_path):
    out = str(tmp_path / 'run')
    code, log = run_train('--dataset_train', demo_records[0], '--dataset_val', demo_records[1],
                          '--output_dir', out, '--max_steps', '1', '--num_eval_images', '1',
                          '--crf', 'false')
    assert code == 0, log
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, 'eval', '*.jpg')))
    assert names == ['val_1_annotation.jpg', 'val_1_img.jpg', 'val_1_overlay.jpg',
                     'val_1_prediction.jpg']


def test_bad_flags_and_paths_give_clear_errors(demo_records, tmp_path):
    code, log = run_train('--dataset_train', str(tmp_path / 'missing.record'),
                          '--output_dir', str(tmp_path / 'a'))
    assert code == 1 and 'missing.record does not exist' in log and 'Traceback' not in log
    code, log = run_train('--dataset_train', demo_records[0], '--output_dir',
                          str(tmp_path / 'b'), '--batch_size', '-2')
    assert code == 1 and 'batch_size must be positive' in log
    code, log = run_train('--dataset_train', demo_records[0], '--output_dir',
                          str(tmp_path / 'c'), '--checkpoint_path', str(tmp_path / 'nope.ckpt'))
    assert code == 1 and 'nope.ckpt not found' in log


def save_partial_checkpoint(path, shapes_and_values):
    with tf.Graph().as_default():
        variables = {name: tf.Variable(value, name=name.replace('/', '_'))
                     for name, value in shapes_and_values.items()}
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver(variables).save(sess, path)


def test_partial_checkpoint_restores_what_it_has(tmp_path):
    rng = np.random.RandomState(0)
    values = {'vgg_16/conv1/conv1_1/weights': rng.randn(3, 3, 3, 64).astype(np.float32),
              'vgg_16/conv1/conv1_1/biases': rng.randn(64).astype(np.float32),
              'vgg_16/fc8/weights': rng.randn(1, 1, 16, 1000).astype(np.float32)}
    ckpt = str(tmp_path / 'partial.ckpt')
    save_partial_checkpoint(ckpt, values)
    images = tf.placeholder(tf.float32, [None, None, None, 3])
    build_network(images, 3, True, fc_depth=16)
    messages = []
    init_fn = make_init_fn(ckpt, tf.model_variables(), ['vgg_16/fc8'], messages.append)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        init_fn(sess)
        got = {v.op.name: sess.run(v) for v in tf.model_variables()}
    np.testing.assert_array_equal(got['vgg_16/conv1/conv1_1/weights'],
                                  values['vgg_16/conv1/conv1_1/weights'])
    assert messages[0].startswith('Initialising 2 variables')
    assert 'vgg_16/fc6/weights' in messages[1] and 'vgg_16/conv1/conv1_2/weights' in messages[1]


def test_shape_mismatch_names_the_variable(tmp_path):
    ckpt = str(tmp_path / 'wrong.ckpt')
    save_partial_checkpoint(ckpt, {'vgg_16/conv1/conv1_1/weights': np.zeros((5, 5, 3, 64),
                                                                            np.float32)})
    images = tf.placeholder(tf.float32, [None, None, None, 3])
    build_network(images, 3, True, fc_depth=16)
    with pytest.raises(CheckpointError, match=r'conv1_1/weights: checkpoint \[5, 5, 3, 64\]'):
        make_init_fn(ckpt, tf.model_variables(), [], lambda *_: None)


def test_output_dir_of_another_network_is_refused(demo_records, tmp_path):
    out = str(tmp_path / 'run')
    overrides = {'dataset_train': demo_records[0], 'output_dir': out, 'max_steps': '1',
                 'fc_depth': '16', 'crop_size': '64,64', 'batch_size': '1'}
    config_path = os.path.join(ROOT, 'configs', 'demo_fcn8s.yaml')
    train(resolve_config(config_path, overrides), log=lambda *_: None)
    other = dict(overrides, num_classes=str(DEMO_NUM_CLASSES + 1), class_colors='',
                 class_names='')
    with pytest.raises(ConfigError, match='different network'):
        train(resolve_config(config_path, other), log=lambda *_: None)


def test_a_slow_session_close_is_said(fresh_graph):
    import time
    from utils.training.trainer import closing_session

    class SlowSession(tf.Session):
        def close(self):
            time.sleep(0.3)
            super().close()
    messages = []
    with closing_session(SlowSession(), messages.append, seconds=0.1) as session:
        assert tf.get_default_session() is session
    assert messages == ['Closing the session (its threads are stopping)...']
    with closing_session(tf.Session(), messages.append, seconds=5):
        pass
    assert len(messages) == 1  # a quick close says nothing
