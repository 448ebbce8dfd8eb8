"""The failure paths a real user hits: two jobs on one run, damaged records, labels beyond the
classes, saves, converter input, prediction names and sizes, and the one-line errors."""
import glob
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf
from PIL import Image

from tests.conftest import DEMO_NUM_CLASSES, ROOT, run_script as run, tiny_config
from utils.config import resolve_config
from utils.data.conversion import convert_pairs, make_label_spec
from utils.data.layouts import camvid_pairs
from utils.data.records import count_records, make_example, scan_records
from utils.errors import ConfigError, DataError
from utils.fileio import atomic_write_text
from utils.rundir import RunDir
from utils.training.trainer import train

DEMO = os.path.join(ROOT, 'configs', 'demo_fcn8s.yaml')
TINY = ['--config', DEMO, '--model', 'fcn32s', '--fc_depth', '8', '--crop_size', '32,32',
        '--batch_size', '1', '--log_every', '1', '--crf', 'false']


# 1. Two jobs on one run directory.

def test_a_second_job_on_a_held_run_directory_stops_at_once(tmp_path):
    run = RunDir(str(tmp_path / 'run'))
    messages = []
    with run.lock(messages.append):
        with pytest.raises(ConfigError, match=r'in use by another training job \(pid %d on '
                           % os.getpid()):
            with run.lock():
                pass
    assert messages == []
    with run.lock(messages.append):  # released cleanly: no message
        pass
    assert messages == []


def test_a_lock_left_by_a_killed_job_is_taken_over(tmp_path, demo_records):
    out = str(tmp_path / 'run')
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py')] + TINY + [
        '--dataset_train', demo_records[0], '--output_dir', out, '--max_steps', '100000'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        for line in first.stdout:
            if 'Full config' in line:
                break
        code, log = run('train.py', *TINY, '--dataset_train', demo_records[0], '--output_dir',
                        out, '--max_steps', '2')
        assert code == 1 and 'in use by another training job (pid %d' % first.pid in log, log
        assert 'Traceback' not in log
    finally:
        first.kill()
        first.wait()
    code, log = run('train.py', *TINY, '--dataset_train', demo_records[0], '--output_dir', out,
                    '--max_steps', '2')
    assert code == 0, log
    assert 'Taking over the lock of %s left by a job that did not end cleanly (pid %d' % (
        out, first.pid) in log


# 2. Damaged records.

def test_a_truncated_record_file_costs_no_training_step(tmp_path, demo_records):
    data = open(demo_records[0], 'rb').read()
    damaged = str(tmp_path / 'damaged.record')
    open(damaged, 'wb').write(data[:len(data) * 2 // 3])
    readable = scan_records([damaged])[0]
    assert readable.damage and 0 < readable.count < 12
    messages = []
    summary = train(tiny_config(dataset_train='%s,%s' % (damaged, demo_records[0]),
                                dataset_val=damaged, num_eval_images=0, max_steps=30,
                                output_dir=tmp_path / 'run'), log=messages.append)
    assert summary['step'] == 30 and summary['checkpoint'].endswith('model.ckpt-30')
    assert summary['validation']['num_images'] == readable.count
    assert any('%s is damaged after record %d' % (damaged, readable.count) in m
               for m in messages)
    assert count_records([damaged]) == readable.count


# 3. Labels beyond num_classes, past the first records and without a converter report.

def records_with_a_bad_label(path, bad_index=5, count=8, value=DEMO_NUM_CLASSES + 1):
    with tf.io.TFRecordWriter(path) as writer:
        for index in range(count):
            image = np.full((40, 40, 3), 90, np.uint8)
            label = np.zeros((40, 40), np.uint8)
            if index == bad_index:
                label[10:20, 10:20] = value
            writer.write(make_example(
                cv2.imencode('.png', image)[1].tobytes(), 'png',
                cv2.imencode('.png', label)[1].tobytes(), 40, 40,
                'img%d.png' % index).SerializeToString())


def test_labels_beyond_the_classes_stop_training_and_evaluation(tmp_path, trained_run):
    path = str(tmp_path / 'copied.record')  # no report beside it
    records_with_a_bad_label(path)
    out = str(tmp_path / 'run')
    with pytest.raises(DataError, match=r'labels of img5.png in %s have values \[5\], but '
                       r'num_classes is 4' % path):
        train(tiny_config(dataset_train=path, output_dir=out, max_steps=50),
              log=lambda *_: None)
    assert glob.glob(os.path.join(out, 'train', 'model.ckpt-*.index'))  # nothing lost
    code, log = run('evaluate.py', '--run_dir', trained_run, '--dataset', path,
                    '--output_dir', str(tmp_path / 'eval'), '--no-crf')
    assert code == 1 and 'labels of img5.png in %s have values [5]' % path in log, log
    assert 'Traceback' not in log


# 4. Saves.

def test_resumed_runs_keep_one_best_checkpoint_without_optimiser_state(tmp_path, demo_records):
    out = str(tmp_path / 'run')
    run_dir = RunDir(out)
    stale = os.path.join(run_dir.train_dir, 'model.ckpt-1.data-00000-of-00001.tempstate123')
    for steps in (2, 4):
        config = tiny_config(dataset_train=demo_records[0], dataset_val=demo_records[1],
                             output_dir=out, max_steps=steps, eval_every=1, save_every=1,
                             learning_rate=0.01)
        messages = []
        train(config, log=messages.append)
        os.makedirs(run_dir.train_dir, exist_ok=True)
        open(stale, 'w').write('x' * 1000)
    assert any('Removed 1 temporary file(s) of interrupted checkpoint saves' in m
               for m in messages)
    best = run_dir.read_best()
    indexes = glob.glob(os.path.join(run_dir.best_dir, 'model.ckpt-*.index'))
    assert indexes == [best['checkpoint'] + '.index']
    names = tf.train.load_checkpoint(best['checkpoint']).get_variable_to_shape_map()
    assert 'global_step' in names and not [n for n in names if 'Adam' in n]
    assert any(m.startswith('Checkpoint size ') for m in messages)


def test_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(str(tmp_path / 'report.json'), '{}')
    finally:
        os.umask(old)
    assert os.stat(str(tmp_path / 'report.json')).st_mode & 0o777 == 0o644


# 5. Converter input.

def write_pair(root, name, image, label, image_ext='.png', label_ext='.png', exif=None):
    for folder in ('train', 'trainannot'):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    image_path = os.path.join(root, 'train', name + image_ext)
    if exif:
        Image.fromarray(image).save(image_path, exif=exif, quality=95)
    else:
        Image.fromarray(image).save(image_path)
    Image.fromarray(label).save(os.path.join(root, 'trainannot', name + label_ext))


def convert(root, out, num_classes=3, **kwargs):
    spec = make_label_spec(num_classes, **kwargs)
    return convert_pairs(camvid_pairs(root, 'train'), out, spec, log=lambda *_: None)


def test_converter_bad_files_are_bad_pairs_and_no_shard_is_empty(tmp_path):
    root = str(tmp_path / 'data')
    for i in range(2):
        write_pair(root, 'ok%d' % i, np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), np.uint8))
    open(os.path.join(root, 'train', 'empty.png'), 'wb').close()
    Image.fromarray(np.ones((8, 8), np.uint8)).save(os.path.join(root, 'trainannot',
                                                                 'empty.png'))
    write_pair(root, 'lossy', np.zeros((8, 8, 3), np.uint8), np.ones((8, 8), np.uint8),
               label_ext='.jpg')
    messages = []
    report = convert_pairs(camvid_pairs(root, 'train'), str(tmp_path / 'out.record'),
                           make_label_spec(3), num_shards=10, log=messages.append)
    reasons = {os.path.basename(s['image']): s['reason'] for s in report['skipped']}
    assert 'is empty (0 bytes)' in reasons['empty.png']
    assert 'is a JPEG' in reasons['lossy.png'] and '--allow_lossy_labels' in reasons['lossy.png']
    assert '--num_shards 10 is more than the 4 pairs' in messages[0]
    assert len(report['output_paths']) == 2 and '2 of the 4 shards would be empty' in messages[-1]
    assert report['output_paths'][0].endswith('out.record-00000-of-00002')
    assert all(os.path.getsize(p) for p in report['output_paths'])
    report = convert_pairs(camvid_pairs(root, 'train'), str(tmp_path / 'lossy.record'),
                           make_label_spec(3, allow_lossy_labels=True), log=lambda *_: None)
    assert 'lossy.png' not in str(report['skipped'])


def test_binary_masks_stored_as_0_and_255_are_not_silently_void(tmp_path):
    root = str(tmp_path / 'data')
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    write_pair(root, 'a', np.zeros((8, 8, 3), np.uint8), mask)
    with pytest.raises(DataError, match='--label_map 0:0,255:1'):
        convert(root, str(tmp_path / 'a.record'), num_classes=2)
    report = convert(root, str(tmp_path / 'b.record'), num_classes=2, label_map={0: 0, 255: 1})
    assert report['class_pixel_counts'] == [48, 16]


def test_image_and_label_keep_one_orientation_whatever_the_exif_tag(tmp_path):
    root = str(tmp_path / 'data')
    image = np.zeros((6, 10, 3), np.uint8)  # stored 10 wide, 6 high
    image[:, :5] = 255  # left half white
    label = np.zeros((6, 10), np.uint8)
    label[:, :5] = 1
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    write_pair(root, 'a', image, label, image_ext='.jpg', exif=exif)
    out = str(tmp_path / 'a.record')
    convert(root, out)
    record = next(iter(tf.io.tf_record_iterator(out)))
    from utils.data.records import decode_fields, example_fields
    decoded, stored = decode_fields(example_fields(record))
    assert decoded.shape[:2] == stored.shape == (10, 6)  # rotated alike
    white = decoded[..., 0] > 128
    assert (stored[white] == 1).mean() > 0.9 and (stored[~white] == 0).mean() > 0.9


# 6. predict.py.

def test_predict_names_distinct_inputs_distinctly_and_caps_large_images(tmp_path, trained_run):
    for folder in ('a', 'b'):
        os.makedirs(str(tmp_path / 'in' / folder))
        cv2.imwrite(str(tmp_path / 'in' / folder / 'x.png'),
                    np.random.RandomState(0).randint(0, 255, (70, 90, 3), np.uint8))
    out = str(tmp_path / 'out')
    code, log = run('predict.py', '--run_dir', trained_run, '--input', str(tmp_path / 'in' / 'a'),
                    str(tmp_path / 'in' / 'b'), str(tmp_path / 'in' / 'a' / 'x.png'),
                    '--output_dir', out, '--max_side', '40')
    assert code == 0 and 'Predicted 2 of 2' in log, log
    for folder in ('a', 'b'):
        label = cv2.imread(os.path.join(out, folder, 'x_label.png'), cv2.IMREAD_UNCHANGED)
        assert label.shape == (70, 90)


# 7. One-line errors for expected mistakes.

@pytest.mark.parametrize('overrides, message', [
    ({'class_colors': '300,0,0;0,0,0;0,0,0;0,0,0'}, 'class_colors entries need R,G,B values'),
    ({'void_label': '300'}, 'void_label must be in 0..255'),
])
def test_config_values_out_of_range_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(DEMO, overrides)


def test_yaml_floats_in_exponent_notation_are_accepted(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('learning_rate: 1e-4\nweight_decay: 5e-4\n')
    config = resolve_config(str(path))
    assert config.learning_rate == 1e-4 and config.weight_decay == 5e-4


def test_expected_mistakes_end_in_one_line(tmp_path, trained_run, demo_records):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    cases = [
        (('evaluate.py', '--run_dir', trained_run, '--dataset', demo_records[1], '--output_dir',
          str(blocker)), 1, 'is a file'),
        (('evaluate.py', '--run_dir', trained_run, '--dataset', demo_records[1], '--output_dir',
          str(tmp_path / 'e'), '--num_images', '-1'), 2, "'-1' is not an integer >= 0"),
        (('train.py', *TINY, '--dataset_train', demo_records[0], '--output_dir',
          str(tmp_path / 'r'), '--precision', 'mixed_float16'), 1, 'needs a CUDA GPU'),
        (('train.py', *TINY, '--dataset_train', demo_records[0], '--output_dir',
          str(tmp_path / 'r2'), '--precision', 'mixed_bfloat16', '--distribution',
          'multi_worker'), 1, 'does not run with distribution multi_worker'),
        (('export_model.py', '--run_dir', trained_run, '--export_dir',
          str(blocker / 'model')), 1, 'cannot write'),
    ]
    for argv, status, message in cases:
        code, log = run(*argv)
        assert code == status and message in log and 'Traceback' not in log, (argv, log)


def test_a_checkpoint_of_another_network_is_a_clear_error(tmp_path, trained_run, demo_records):
    other = str(tmp_path / 'other')
    train(tiny_config(dataset_train=demo_records[0], output_dir=other, max_steps=1),
          log=lambda *_: None)
    code, log = run('evaluate.py', '--run_dir', trained_run, '--checkpoint',
                    os.path.join(other, 'train'), '--dataset', demo_records[1], '--output_dir',
                    str(tmp_path / 'e'))
    assert code == 1 and 'does not fit the run\'s model fcn8s' in log, log
    assert 'Traceback' not in log


def test_max_steps_already_reached_says_so(tmp_path, demo_records):
    out = str(tmp_path / 'run')
    train(tiny_config(dataset_train=demo_records[0], output_dir=out, max_steps=2),
          log=lambda *_: None)
    messages = []
    summary = train(tiny_config(dataset_train=demo_records[0], output_dir=out, max_steps=1),
                    log=messages.append)
    assert summary['checkpoint'].endswith('model.ckpt-2')
    assert any('already at step 2 (max_steps 1): nothing to train' in m for m in messages)


def test_cpu_logs_are_free_of_the_cuda_noise(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}  # as in a shell
    code, log = run('count_ops.py', '--model', 'fcn32s', '--fc_depth', '8', '--num_classes',
                    '3', '--input_size', '32,32', env=env)
    assert code == 0, log
    if not os.path.exists('/dev/nvidiactl'):
        assert 'cuInit' not in log and 'oneDNN custom operations' not in log


SCRIPTS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, '*.py')))


def test_every_script_imports_tensorflow_quietly_first():
    """Every script's first import of the suite is utils.startup's quiet import, called before
    any module that imports TensorFlow, so that none prints its start-up noise (the runtime
    check: test_cpu_logs_are_free_of_the_cuda_noise) and none ends in `No module named ...`
    when the virtualenv is not active."""
    import ast
    assert 'train.py' in SCRIPTS and 'make_demo_data.py' in SCRIPTS
    for script in SCRIPTS:
        tree = ast.parse(open(os.path.join(ROOT, script)).read())
        statements = [node for node in tree.body
                      if isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr))
                      and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        ours = [i for i, node in enumerate(statements) if isinstance(node, ast.ImportFrom)
                and node.module.split('.')[0] in ('utils', 'nets', 'tensorflow', 'tf_slim')]
        first = statements[ours[0]]
        assert first.module == 'utils.startup', (script, first.module)
        call = statements[ours[0] + 1]
        assert (isinstance(call, ast.Expr) and isinstance(call.value, ast.Call)
                and call.value.func.id == 'import_tensorflow_quietly'), script


def test_library_chatter_is_kept_off_the_console_unless_the_block_fails(capfd):
    from utils.startup import captured_stderr
    with captured_stderr() as captured:
        os.write(2, b'fully_quantize: 0, inference_type: 6\n')
        assert 'fully_quantize' in captured()
    assert capfd.readouterr().err == ''
    with pytest.raises(RuntimeError):
        with captured_stderr():
            os.write(2, b'why it failed\n')
            raise RuntimeError('conversion failed')
    assert 'why it failed' in capfd.readouterr().err  # shown with the failure


def test_a_script_without_the_virtualenv_says_how_to_activate_it():
    bare = '/usr/bin/python3'
    if not os.path.exists(bare) or subprocess.run(
            [bare, '-c', 'import tensorflow'], capture_output=True).returncode == 0:
        pytest.skip('no Python without TensorFlow on this machine')
    for script in ('train.py', 'make_demo_data.py'):
        result = subprocess.run([bare, os.path.join(ROOT, script), '--help'],
                                capture_output=True, text=True, cwd=ROOT)
        lines = (result.stdout + result.stderr).strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, lines
        assert lines[0].startswith('error: tensorflow is not installed for %s; ' % bare)
        assert 'source %s/bin/activate' % os.path.join(ROOT, '.venv') in lines[0]


def test_jobs_read_the_best_checkpoint_unless_told_otherwise(tmp_path, demo_records):
    import json
    from utils.rundir import load_run
    out = str(tmp_path / 'run')
    train(tiny_config(dataset_train=demo_records[0], output_dir=out, max_steps=3, save_every=1,
                      keep_checkpoints=3), log=lambda *_: None)
    run_dir = RunDir(out)
    messages = []
    assert load_run(out, log=messages.append)[1] == run_dir.checkpoint_prefix + '-3'
    assert messages == ['Using the latest checkpoint: %s-3' % run_dir.checkpoint_prefix]
    best = {'mean_iou': 0.5, 'step': 1, 'checkpoint': run_dir.checkpoint_prefix + '-1'}
    with open(run_dir.best_path, 'w') as f:
        json.dump(best, f)
    assert load_run(out, log=messages.append)[1] == best['checkpoint']
    assert 'Using the best checkpoint (validation mIoU 50.0% at step 1' in messages[-1]
    assert load_run(out, latest=True, log=messages.append)[1].endswith('-3')


def test_a_batch_beyond_the_machines_memory_is_refused_before_the_first_step(demo_records):
    """The activations the backward pass keeps are a lower bound of a step's memory; a batch
    whose bound exceeds the available memory stops with one line instead of a crash."""
    from utils.training.graph import (activation_bytes_lower_bound, build_training_graph,
                                      check_activation_memory, variable_bytes)
    bounds = {}
    for batch in (1, 2):
        config = tiny_config(dataset_train=demo_records[0], batch_size=batch)
        with tf.Graph().as_default() as graph:
            build_training_graph(config, log=lambda *_: None)
            bounds[batch] = activation_bytes_lower_bound(graph, batch)
    # conv1_1 and its ReLU alone: 2 x 32 x 32 x 64 float32 values per image
    assert bounds[1] > 2 * 32 * 32 * 64 * 4 and bounds[2] == 2 * bounds[1]
    assert check_activation_memory(graph, config, None) == bounds[2]
    weights = variable_bytes(graph)
    with pytest.raises(ConfigError, match='batch_size 2 at crop_size 32x32 keeps at least .* '
                                          'lower batch_size or crop_size'):
        check_activation_memory(graph, config, bounds[2] + weights - 1)
    check_activation_memory(graph, config, bounds[2] + weights)


def test_weights_beyond_the_machines_memory_are_refused_before_the_first_step(demo_records):
    """fc_depth 60000 (issue 32): about 20 GB of weights and three times that with Adam.
    Weights, optimiser slots and gradients count against the available memory."""
    from utils.training.graph import build_training_graph, check_activation_memory, variable_bytes
    config = tiny_config(dataset_train=demo_records[0], model='fcn8s', fc_depth=60000)
    with tf.Graph().as_default() as graph:
        build_training_graph(config, log=lambda *_: None)  # builds, allocates nothing
        weights = variable_bytes(graph)
        fc_bytes = (7 * 7 * 512 * 60000 + 60000 * 60000) * 4  # fc6 and fc7, float32
        # weights, Adam's two slots, the gradient: four copies (the rest is small beside them)
        assert 4 * fc_bytes < weights < 4.02 * fc_bytes
        with pytest.raises(ConfigError, match=r'weights, adam slots and gradients need .* lower '
                                              r'fc_depth \(now 60000\)'):
            check_activation_memory(graph, config, 24 * 2 ** 30)
