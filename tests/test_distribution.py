"""Data parallelism through tf.distribute, on two logical CPU devices."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tests.conftest import ROOT
from utils.config import resolve_config
from utils.errors import ConfigError
from utils.training.monitoring import read_jsonl
from utils.training.trainer import train

DEMO = os.path.join(ROOT, 'configs', 'demo_fcn8s.yaml')


def run_losses(demo_records, out, **extra):
    # No random augmentation or dropout (crop = the demo images' size), a seeded shuffle: both
    # runs see the same batches, and op determinism (process-wide) is not needed.
    overrides = dict({'dataset_train': demo_records[0], 'output_dir': out, 'max_steps': '4',
                      'model': 'fcn32s', 'fc_depth': '16', 'crop_size': '64,80',
                      'batch_size': '4', 'log_every': '1', 'seed': '3', 'random_flip': 'false',
                      'dropout_keep_prob': '1.0'}, **extra)
    messages = []
    with tf.Graph().as_default():
        train(resolve_config(DEMO, overrides), log=messages.append)
    history = read_jsonl(os.path.join(out, 'train', 'history.jsonl'))
    return [h['loss'] for h in history], messages


def test_two_replicas_follow_the_single_device_trajectory(demo_records, tmp_path):
    # Two learning-rate groups (two Adam optimizers) on both sides.
    single, _ = run_losses(demo_records, str(tmp_path / 'one'), backbone_lr_multiplier='0.5')
    mirrored, messages = run_losses(demo_records, str(tmp_path / 'two'),
                                    distribution='mirrored', devices='/cpu:0,/cpu:1',
                                    backbone_lr_multiplier='0.5')
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
        from utils.training.distribution import make_strategy
        make_strategy(resolve_config(DEMO, {'distribution': 'mirrored', 'batch_size': '3',
                                            'devices': '/cpu:0,/cpu:1'}))


def free_ports(count):
    import socket
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_workers(cmd, ports, timeout=400):
    """Starts one process per worker with its TF_CONFIG; returns their (exit code, output)."""
    import json
    procs = []
    for index in range(len(ports)):
        env = dict(os.environ, TF_CONFIG=json.dumps({
            'cluster': {'worker': ['127.0.0.1:%d' % p for p in ports]},
            'task': {'type': 'worker', 'index': index}}))
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, cwd=ROOT, env=env))
    results = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        results.append((proc.returncode, out))
    return results


def test_two_workers_train_together_chief_writes_and_both_resume(demo_records, tmp_path):
    out = str(tmp_path / 'run')
    cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--config', DEMO, '--model', 'fcn32s',
           '--fc_depth', '16', '--crop_size', '64,64', '--batch_size', '2', '--distribution',
           'multi_worker', '--dataset_train', demo_records[0], '--dataset_val', demo_records[1],
           '--output_dir', out, '--num_eval_images', '1', '--crf', 'false', '--save_every', '2',
           '--eval_every', '3', '--log_every', '1']
    (chief_code, chief), (worker_code, worker) = run_workers(cmd + ['--max_steps', '3'],
                                                            free_ports(2))
    assert chief_code == 0 and worker_code == 0, chief + worker
    assert 'Training on 2 replicas' in chief and 'step 3 Current Loss' in worker
    assert 'Model saved in file' in chief and 'Model saved in file' not in worker
    assert 'validation on 1 images' in chief and 'validation' not in worker
    assert os.path.exists(os.path.join(out, 'train', 'model.ckpt-3.index'))
    jpegs = [n for n in os.listdir(os.path.join(out, 'eval')) if n.endswith('.jpg')]
    assert sorted(jpegs) == ['val_3_annotation.jpg', 'val_3_img.jpg', 'val_3_overlay.jpg',
                             'val_3_prediction.jpg']
    results = run_workers(cmd + ['--max_steps', '5'], free_ports(2))
    for code, log in results:
        assert code == 0, log
        assert 'at step 3' in log and 'step 5 Current Loss' in log
    assert os.path.exists(os.path.join(out, 'train', 'model.ckpt-5.index'))


def test_multi_worker_without_tf_config_is_a_clear_error(demo_records, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'TF_CONFIG'}
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), '--config', DEMO,
                             '--distribution', 'multi_worker', '--dataset_train',
                             demo_records[0], '--output_dir', str(tmp_path / 'r')],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert result.returncode == 1 and 'TF_CONFIG' in result.stderr
    assert 'Traceback' not in result.stderr
