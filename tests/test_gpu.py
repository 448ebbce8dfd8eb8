"""GPU paths: training through cuDNN (float32 and mixed_float16), mirrored replicas (with two
GPUs), every export format from a GPU-trained run. They run where TensorFlow sees a CUDA GPU
and skip elsewhere; `make gpu-check` runs them verbosely and prints the figures (lines 'GPU: ...').
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow
import tensorflow.compat.v1 as tf

from tests.conftest import ROOT
from utils.config import resolve_config
from utils.training.monitoring import read_jsonl
from utils.training.trainer import train

GPUS = tensorflow.config.list_physical_devices('GPU')
pytestmark = pytest.mark.skipif(not GPUS, reason='no CUDA GPU visible to TensorFlow')
DEMO = os.path.join(ROOT, 'configs', 'demo_fcn8s.yaml')
STEPS = 30


def gpu_run(demo_records, out, **extra):
    """Trains the demo FCN-8s for STEPS steps; returns (history, log messages)."""
    overrides = dict({'dataset_train': demo_records[0], 'dataset_val': demo_records[1],
                      'output_dir': out, 'max_steps': str(STEPS), 'fc_depth': '64',
                      'crop_size': '64,80', 'batch_size': '4', 'log_every': '5',
                      'eval_every': str(STEPS), 'crf': 'false', 'seed': '3'}, **extra)
    messages = []
    with tf.Graph().as_default():
        train(resolve_config(DEMO, overrides), log=messages.append)
    return read_jsonl(os.path.join(out, 'train', 'history.jsonl')), messages


def report(what, history):
    rate = np.median([h['images_per_s'] for h in history[1:]] or [0])
    print('GPU: %s: %.1f images/s (median), loss %.3f -> %.3f'
          % (what, rate, history[0]['loss'], history[-1]['loss']))


def test_training_runs_its_convolutions_on_the_gpu_through_cudnn(demo_records, tmp_path):
    from nets import build_network
    images = tf.random.uniform([2, 64, 80, 3])
    logits, _ = build_network(images, 4, True, 'fcn8s', fc_depth=16)
    gradient = tf.gradients(tf.reduce_sum(logits), tf.trainable_variables())
    metadata = tf.RunMetadata()
    with tf.Session() as session:
        session.run(tf.global_variables_initializer())
        session.run(gradient, options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
                    run_metadata=metadata)
    on_gpu = {node.node_name.split('/')[-1] for device in metadata.step_stats.dev_stats
              if 'GPU' in device.device.upper() for node in device.node_stats}
    assert any(name.startswith(('Conv2D', 'Conv2DBackprop')) for name in on_gpu), on_gpu
    history, messages = gpu_run(demo_records, str(tmp_path / 'float32'), precision='float32')
    assert any('Precision: float32' in m for m in messages)
    assert np.isfinite([h['loss'] for h in history]).all()
    assert history[-1]['loss'] < history[0]['loss']
    report('FCN-8s float32 training (fc_depth 64, 64x80, batch 4)', history)


def test_mixed_float16_trains_and_keeps_float32_weights(demo_records, tmp_path):
    out = str(tmp_path / 'fp16')
    history, _ = gpu_run(demo_records, out, precision='mixed_float16')
    assert np.isfinite([h['loss'] for h in history]).all()
    assert history[-1]['loss'] < history[0]['loss']
    reader = tf.train.load_checkpoint(os.path.join(out, 'train', 'model.ckpt-%d' % STEPS))
    dtypes = reader.get_variable_to_dtype_map()
    assert dtypes['vgg_16/conv1/conv1_1/weights'] == tf.float32
    report('FCN-8s mixed_float16 training', history)


@pytest.mark.skipif(len(GPUS) < 2, reason='mirrored replicas need two GPUs (on one, the '
                    'mirrored path is covered by the two-CPU-device tests)')
def test_mirrored_replicas_on_two_gpus_follow_one_gpu(demo_records, tmp_path):
    mirrored, messages = gpu_run(demo_records, str(tmp_path / 'mirrored'), precision='float32',
                                 distribution='mirrored', devices='/gpu:0,/gpu:1',
                                 dropout_keep_prob='1.0', random_flip='false')
    assert any('Training on 2 replicas' in m for m in messages)
    single, _ = gpu_run(demo_records, str(tmp_path / 'single'), precision='float32',
                        dropout_keep_prob='1.0', random_flip='false')
    # cuDNN's reductions are not bitwise deterministic: the trajectories agree loosely.
    np.testing.assert_allclose([h['loss'] for h in mirrored], [h['loss'] for h in single],
                               rtol=0.05)
    report('FCN-8s float32 training mirrored over 2 GPUs (batch 4 = 2 x 2)', mirrored)


def test_every_export_format_from_a_gpu_run(demo_records, tmp_path):
    out = str(tmp_path / 'run')
    gpu_run(demo_records, out, precision='float32')
    export_dir = str(tmp_path / 'exported')
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'export_model.py'), '--run_dir', out,
         '--export_dir', export_dir, '--formats',
         'saved_model,frozen_graph,onnx,tflite,tflite_int8', '--input_size', '64,80',
         '--calibration_record', demo_records[0], '--validation_record', demo_records[1],
         '--benchmark_size', '64,80'], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.load(open(os.path.join(export_dir, 'export_report.json')))['formats']
    assert [row['format'] for row in rows] == ['saved_model', 'frozen_graph', 'onnx', 'tflite',
                                               'tflite_int8']
    for row in rows:
        print('GPU: export %s: %s' % (row['format'], json.dumps(row, sort_keys=True)))
