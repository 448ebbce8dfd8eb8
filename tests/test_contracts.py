"""The contracts that have one home: network signatures and end points, the record decoder,
configs without a class table, the flags' help, comma lists, and the size of functions."""
import ast
import glob
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from nets import LOGITS, MODELS, NETWORK_ARGS, TRAINING_ARGS, accepted_args, build_network
from nets.fcn import fcn
from nets.inception_v3_fcn import inception_v3_fcn
from nets.mobilenet_v1 import mobilenet_v1_fcn
from tests.conftest import ROOT
from utils.config import resolve_config
from utils.data.records import (KEY_ENCODED, KEY_FILENAME, KEY_HEIGHT, KEY_LABEL, KEY_WIDTH,
                                UndecodableRecord, check_records, decode_fields, example_fields,
                                parse_example, verify_records)
from utils.errors import ConfigError
from utils.rundir import RunDir

SMALL = {'fc_depth': 8, 'depth_multiplier': 0.25, 'classifier_depth': 8}
MAX_FUNCTION_LINES = 80


@pytest.mark.parametrize('model', ['fcn8s', 'mobilenet_v1_fcn8s', 'inception_v3_fcn32s'])
def test_every_network_puts_its_logits_under_one_key(model):
    size = 75 if model.startswith('inception') else 64
    images = tf.zeros([1, size, size, 3])
    logits, end_points = build_network(images, 3, False, model, **SMALL)
    assert end_points[LOGITS] is logits
    assert logits.shape.as_list() == [1, size, size, 3]


def test_a_misspelt_network_setting_fails():
    images = tf.zeros([1, 32, 32, 3])
    with pytest.raises(TypeError, match='fc_dpth'):
        build_network(images, 3, False, 'fcn32s', fc_dpth=8)
    for network in (fcn, mobilenet_v1_fcn, inception_v3_fcn):  # no **unused any more
        with pytest.raises(TypeError):
            network(images, 3, False, fc_dpth=8)


def test_the_factory_hands_each_network_only_its_own_settings():
    assert set(accepted_args('fcn8s')) >= {'fc_depth', 'at_once', 'dropout_keep_prob'}
    assert 'depth_multiplier' not in accepted_args('fcn8s')
    assert 'fc_depth' not in accepted_args('mobilenet_v1_fcn')
    assert 'classifier_kernel' not in accepted_args('inception_v3_fcn8s')
    assert 'batch_norm_decay' not in accepted_args('fcn8s')  # VGG has no batch norm
    assert 'batch_norm_decay' in accepted_args('mobilenet_v1_fcn8s')
    for model in MODELS:
        assert set(accepted_args(model)) <= set(NETWORK_ARGS + TRAINING_ARGS)
    # A config's network settings all go in; the MobileNet head ignores VGG's fc_depth.
    config = resolve_config(os.path.join(ROOT, 'configs', 'cityscapes7_mobilenet_fcn.yaml'),
                            {'depth_multiplier': '0.25', 'classifier_depth': '8'})
    logits, _ = build_network(tf.zeros([1, 64, 64, 3]), config.num_classes, False,
                              **config.network_args())
    assert logits.shape.as_list()[-1] == config.num_classes


def test_a_config_without_a_class_table():
    camvid = os.path.join(ROOT, 'configs', 'camvid_fcn8s.yaml')
    with pytest.raises(ConfigError, match='has 11 entries but num_classes is 5'):
        resolve_config(camvid, {'num_classes': '5'})
    config = resolve_config(camvid, {'num_classes': '5'}, class_table=False)
    assert config.num_classes == 5 and config.class_names == () and config.class_colors == ()
    assert config.class_weights == ()
    assert config.void_label == resolve_config(camvid).void_label  # the rest is the YAML's


def raw_label_record(path, label_bytes, height=4, width=6):
    """A homework-style record (raw label bytes, no label format key)."""
    image = cv2.imencode('.png', np.zeros((height, width, 3), np.uint8))[1].tobytes()

    def feature(value):
        if isinstance(value, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    example = tf.train.Example(features=tf.train.Features(feature={
        KEY_HEIGHT: feature(height), KEY_WIDTH: feature(width), KEY_FILENAME: feature(b'x.png'),
        KEY_ENCODED: feature(image), KEY_LABEL: feature(label_bytes)}))
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(example.SerializeToString())
    return example.SerializeToString()


def test_one_decoder_for_training_evaluation_and_verify(tmp_path):
    good = str(tmp_path / 'good.record')
    serialized = raw_label_record(good, bytes([0, 1, 2, 255] * 6))
    image, label = decode_fields(example_fields(serialized))
    assert image.shape == (4, 6, 3) and label.tolist()[0] == [0, 1, 2, 255, 0, 1]
    short = str(tmp_path / 'short.record')
    serialized = raw_label_record(short, b'\x00' * 5)
    with pytest.raises(UndecodableRecord, match='raw label has 5 bytes, expected'):
        decode_fields(example_fields(serialized))
    # The graph reader skips it, the pre-flight check lets training skip it, verify names it.
    parsed = parse_example(tf.constant(serialized))
    with tf.Session() as session:
        assert not session.run(parsed['ok'])
    check_records([short], 3)
    result = verify_records([short], 3)
    assert result['records'] == 1 and 'raw label has 5 bytes' in result['errors'][0]
    assert verify_records([good], 3)['errors'] == []


def test_verify_reports_a_short_raw_label_in_one_line(tmp_path):
    path = str(tmp_path / 'short.record')
    raw_label_record(path, b'\x00' * 5)
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'convert_fcn_dataset.py'),
                          '--verify', '--output_path', path, '--num_classes', '3'],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr
    assert 'record 0 (x.png): raw label has 5 bytes' in out.stdout
    assert 'Traceback' not in out.stderr


def run_python(*args):
    return subprocess.run([sys.executable] + list(args), capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_help_explains_every_key_by_section():
    out = run_python('train.py', '--help')
    assert out.returncode == 0
    text = ' '.join(out.stdout.split())
    assert 'config: model:' in text and 'config: optimisation:' in text
    assert 'depth of VGG fc6/fc7' in text and '(default: 4096)' in text
    assert 'overrides config key' not in text


@pytest.mark.parametrize('argv, message', [
    (['count_ops.py', '--model', 'fcn32s', '--input_size', '0,0'], "'0,0' is not 2"),
    (['count_ops.py', '--model', 'fcn32s', '--input_size', '320'], "'320' is not 2"),
    (['evaluate.py', '--run_dir', 'x', '--dataset', 'y', '--output_dir', 'z', '--scales', ''],
     "'' is not comma-separated float values"),
])
def test_comma_lists_are_parsed_one_way_with_a_clear_error(argv, message):
    out = run_python(*argv)
    assert out.returncode == 2 and message in out.stderr and 'Traceback' not in out.stderr


def test_run_directory_layout_has_one_home(tmp_path):
    run = RunDir(str(tmp_path / 'run'))
    run.make()
    for prefix in ('model.ckpt-2', 'model.ckpt-10', 'model.ckpt-bad'):
        open(os.path.join(run.train_dir, prefix + '.index'), 'w').close()
    assert [os.path.basename(p) for p in run.checkpoint_candidates()] == ['model.ckpt-10',
                                                                          'model.ckpt-2']
    assert run.read_best() is None and run.latest_checkpoint() is None


def test_no_function_is_longer_than_a_page():
    paths = (glob.glob(os.path.join(ROOT, '*.py'))
             + glob.glob(os.path.join(ROOT, 'utils', '**', '*.py'), recursive=True)
             + glob.glob(os.path.join(ROOT, 'nets', '*.py')))
    long = []
    for path in paths:
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.FunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append('%s:%s (%d lines)' % (os.path.relpath(path, ROOT), node.name,
                                                     lines))
    assert not long, long
