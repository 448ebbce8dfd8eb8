"""Data parallelism through tf.distribute, on two logical CPU devices."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tests.conftest import ROOT
from utils.config import ConfigError, resolve_config
from utils.monitoring import read_jsonl
from utils.training import train

DEMO = os.path.join(ROOT, 'configs', 'demo.yaml')


def run_losses(demo_records, out, **extra):
    overrides = dict({'dataset_train': demo_records[0], 'output_dir': out, 'max_steps': '4',
                      'model': 'fcn32s', 'fc_depth': '16', 'crop_size': '64,64',
                      'batch_size': '4', 'log_every': '1', 'seed': '3', 'deterministic': 'true',
                      'dropout_keep_prob': '1.0', 'min_scale': '0.8', 'max_scale': '1.2'},
                     **extra)
    messages = []
    with tf.Graph().as_default():
        train(resolve_config(DEMO, overrides), log=messages.append)
    history = read_jsonl(os.path.join(out, 'train', 'history.jsonl'))
    return [h['loss'] for h in history], messages


def test_two_replicas_follow_the_single_device_trajectory(demo_records, tmp_path):
    single, _ = run_losses(demo_records, str(tmp_path / 'one'))
    mirrored, messages = run_losses(demo_records, str(tmp_path / 'two'),
                                    distribution='mirrored', devices='/cpu:0,/cpu:1')
    assert any('Training on 2 replicas' in m and '2 images each' in m for m in messages)
    assert len(single) == len(mirrored) == 4
    np.testing.assert_allclose(mirrored, single, rtol=2e-3)
    assert single[0] != single[-1]  # it trained
    # Checkpoints keep the plain slim names (loadable by single-device jobs).
    reader = tf.train.load_checkpoint(os.path.join(str(tmp_path / 'two'), 'train',
                                                   'model.ckpt-4'))
    assert 'vgg_16/conv1/conv1_1/weights' in reader.get_variable_to_shape_map()


def test_mirrored_run_validates_once_and_resumes(demo_records, tmp_path):
    out = str(tmp_path / 'run')
    cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--config', DEMO, '--model', 'fcn32s',
           '--fc_depth', '16', '--crop_size', '64,64', '--batch_size', '2', '--distribution',
           'mirrored', '--devices', '/cpu:0,/cpu:1', '--dataset_train', demo_records[0],
           '--dataset_val', demo_records[1], '--output_dir', out, '--num_eval_images', '2',
           '--crf', 'false', '--eval_every', '2', '--save_every', '2']
    first = subprocess.run(cmd + ['--max_steps', '2'], capture_output=True, text=True, cwd=ROOT,
                           timeout=600)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count('validation on 2 images') == 1
    assert sorted(n for n in os.listdir(os.path.join(out, 'eval')) if n.endswith('.jpg')) == [
        'val_2_%d_%s.jpg' % (k, kind) for k in range(2)
        for kind in sorted(['annotation', 'img', 'overlay', 'prediction'])]
    second = subprocess.run(cmd + ['--max_steps', '3'], capture_output=True, text=True,
                            cwd=ROOT, timeout=600)
    assert second.returncode == 0, second.stderr
    assert 'at step 2' in second.stdout and 'step 3 Current Loss' in second.stdout


def test_global_batch_must_split_evenly():
    with pytest.raises(ConfigError, match='multiple of the 2 replicas'):
        from utils.training import make_strategy
        make_strategy(resolve_config(DEMO, {'distribution': 'mirrored', 'batch_size': '3',
                                            'devices': '/cpu:0,/cpu:1'}))
