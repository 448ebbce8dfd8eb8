"""Faults and bad input: kill -9 during training and conversion, full disks, bad records,
memory over a long run. SOAK_KILLS (default 4) sets how many times training is killed."""
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tests.conftest import ROOT, run_process, run_script
from utils.training.monitoring import read_jsonl
from utils.data.records import (KEY_ENCODED, KEY_FILENAME, KEY_FORMAT, KEY_HEIGHT,
                                KEY_LABEL, KEY_LABEL_FORMAT, KEY_WIDTH, count_records)

DEMO = os.path.join(ROOT, 'configs', 'demo_fcn8s.yaml')
TINY = ['--config', DEMO, '--model', 'fcn32s', '--fc_depth', '16', '--crop_size', '32,32',
        '--batch_size', '1', '--log_every', '1']


def train_cmd(*args):
    return [sys.executable, os.path.join(ROOT, 'train.py')] + TINY + list(args)


def run(cmd, timeout=300, process=False):
    """Runs [python, script, args...] in this process (run_script), or with `process` in its
    own: (exit status, output)."""
    return (run_process if process else run_script)(os.path.relpath(cmd[1], ROOT), *cmd[2:],
                                                    timeout=timeout)


def loadable(prefix):
    """True when every tensor of the checkpoint reads back."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
        return True
    except Exception:  # noqa: BLE001 (any failure means not loadable)
        return False


def checkpoint_steps(train_dir):
    names = os.listdir(train_dir) if os.path.isdir(train_dir) else []
    return sorted(int(n.split('-')[1].split('.')[0]) for n in names
                  if n.startswith('model.ckpt-') and n.endswith('.index'))


def test_kill_9_during_training_always_resumes_from_a_complete_checkpoint(demo_records,
                                                                          tmp_path):
    kills = int(os.environ.get('SOAK_KILLS', '4'))
    out = str(tmp_path / 'run')
    train_dir = os.path.join(out, 'train')
    cmd = train_cmd('--dataset_train', demo_records[0], '--output_dir', out, '--save_every', '1',
                    '--keep_checkpoints', '3', '--max_steps', '100000')
    rng = random.Random(0)
    resumed_steps = []
    for kill in range(kills):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=ROOT)
        first_lines = []
        for line in proc.stdout:  # wait until it trains, then kill at a random moment
            first_lines.append(line)
            if 'Current Loss' in line:
                break
        time.sleep(rng.uniform(0.0, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        log = ''.join(first_lines)
        steps = checkpoint_steps(train_dir)
        if kill > 0:
            assert 'Resumed from' in log and 'randomly initialised' not in log, log
            resumed = int(log.split('Resumed from')[1].split('at step ')[1].split()[0])
            # It resumed from the newest checkpoint that was complete when it started.
            assert resumed >= resumed_steps[-1]
            resumed_steps.append(resumed)
        else:
            resumed_steps.append(0)
        assert steps, 'no checkpoint written before kill %d' % kill
    # The final run resumes from the newest loadable checkpoint and finishes.
    newest_good = max(s for s in checkpoint_steps(train_dir)
                      if loadable(os.path.join(train_dir, 'model.ckpt-%d' % s)))
    code, log = run(cmd[:-1] + [str(newest_good + 2)])
    assert code == 0, log
    resumed = int(log.split('Resumed from')[1].split('at step ')[1].split()[0])
    assert resumed == newest_good
    assert loadable(os.path.join(train_dir, 'model.ckpt-%d' % (newest_good + 2)))


def test_a_corrupt_newest_checkpoint_falls_back_to_an_older_one(demo_records, tmp_path):
    out = str(tmp_path / 'run')
    cmd = train_cmd('--dataset_train', demo_records[0], '--output_dir', out, '--save_every', '1')
    code, log = run(cmd + ['--max_steps', '2'])
    assert code == 0, log
    data = os.path.join(out, 'train', 'model.ckpt-2.data-00000-of-00001')
    with open(data, 'r+b') as f:
        f.truncate(os.path.getsize(data) // 2)
    code, log = run(cmd + ['--max_steps', '3'])
    assert code == 0, log
    assert 'model.ckpt-2 is unusable' in log and 'at step 1' in log
    for name in os.listdir(os.path.join(out, 'train')):
        if name.startswith('model.ckpt-'):
            os.remove(os.path.join(out, 'train', name))  # now no checkpoint is left...
    with open(os.path.join(out, 'train', 'model.ckpt-9.index'), 'wb') as f:
        f.write(b'garbage')  # ...but a broken one: never a silent restart from step 0
    code, log = run(cmd + ['--max_steps', '10'])
    assert code == 1 and 'can be restored' in log and 'Traceback' not in log


def make_camvid(root, count, size=(120, 160)):
    rng = np.random.RandomState(0)
    for split in ('train', 'trainannot'):
        os.makedirs(os.path.join(root, split), exist_ok=True)
    for i in range(count):
        name = 'f%04d.png' % i
        cv2.imwrite(os.path.join(root, 'train', name),
                    rng.randint(0, 256, size + (3,), dtype=np.uint8))
        cv2.imwrite(os.path.join(root, 'trainannot', name),
                    rng.randint(0, 4, size).astype(np.uint8))


def convert_cmd(root, out, *extra):
    """A conversion that may replace an earlier output of the same name (--overwrite), as
    these tests convert again onto what an earlier run wrote."""
    return [sys.executable, os.path.join(ROOT, 'convert_fcn_dataset.py'), '--dataset_format',
            'camvid', '--data_dir', root, '--split', 'train', '--output_path', out,
            '--num_classes', '4', '--overwrite'] + list(extra)


def test_kill_9_during_conversion_leaves_no_complete_looking_file(tmp_path):
    root = str(tmp_path / 'data')
    make_camvid(root, 400)
    out = str(tmp_path / 'train.record')
    for delay in (0.5, 2.0, 3.5):
        proc = subprocess.Popen(convert_cmd(root, out), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=ROOT)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if os.path.exists(out):  # only if the run had already finished
            assert count_records([out]) == 400
    code, log = run(convert_cmd(root, out, '--num_workers', '2'))
    assert code == 0, log
    assert count_records([out]) == 400
    assert not [n for n in os.listdir(str(tmp_path)) if n.endswith('.tmp')]


@pytest.fixture
def small_disk(tmp_path):
    """A size-limited tmpfs folder (needs root); skips where it cannot be mounted."""
    mounts = []

    def make(size):
        path = str(tmp_path / ('disk%d' % len(mounts)))
        os.makedirs(path)
        if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s' % size, 'tmpfs', path],
                          capture_output=True).returncode != 0:
            pytest.skip('cannot mount a small tmpfs here (needs root)')
        mounts.append(path)
        return path

    yield make
    for path in mounts:  # lazily where still busy: no mount outlives the test
        if subprocess.run(['umount', path], capture_output=True).returncode != 0:
            subprocess.run(['umount', '-l', path], capture_output=True)


def test_full_disk_during_conversion_keeps_the_earlier_records(tmp_path, small_disk):
    disk = small_disk('600k')
    root = str(tmp_path / 'data')
    make_camvid(root, 3)
    out = os.path.join(disk, 'train.record')
    code, log = run(convert_cmd(root, out))
    assert code == 0, log
    before = open(out, 'rb').read()
    make_camvid(root, 40)
    code, log = run(convert_cmd(root, out))
    assert code == 1 and 'cannot write %s' % out in log and 'Traceback' not in log
    assert open(out, 'rb').read() == before
    assert not [n for n in os.listdir(disk) if n.endswith('.tmp')]


def test_full_disk_during_training_keeps_the_earlier_checkpoint(demo_records, small_disk):
    disk = small_disk('260m')
    out = os.path.join(disk, 'run')
    code, log = run(train_cmd('--dataset_train', demo_records[0], '--output_dir', out,
                              '--save_every', '1', '--max_steps', '5'),
                    process=True)  # a failed job's open files go with its process
    assert code == 1, log
    assert 'cannot write checkpoint %s/train/model.ckpt-2' % out in log
    assert 'Traceback' not in log
    assert loadable(os.path.join(out, 'train', 'model.ckpt-1'))


def test_unwritable_output_dir_is_a_clear_error(demo_records, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    code, log = run(train_cmd('--dataset_train', demo_records[0], '--output_dir',
                              str(blocker / 'run'), '--max_steps', '1'))
    assert code == 1 and str(blocker) in log and 'Traceback' not in log


def example(image_png, label_png, height, width, name):
    feature = {
        KEY_HEIGHT: tf.train.Feature(int64_list=tf.train.Int64List(value=[height])),
        KEY_WIDTH: tf.train.Feature(int64_list=tf.train.Int64List(value=[width])),
        KEY_FILENAME: tf.train.Feature(bytes_list=tf.train.BytesList(value=[name])),
        KEY_ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_png])),
        KEY_FORMAT: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'png'])),
        KEY_LABEL: tf.train.Feature(bytes_list=tf.train.BytesList(value=[label_png])),
        KEY_LABEL_FORMAT: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'png'])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_bad_records_give_clear_errors_or_are_skipped(demo_records, tmp_path):
    base = ['--output_dir', str(tmp_path / 'run'), '--max_steps', '3']
    # Records of another schema (an image-classification record).
    other = str(tmp_path / 'classification.record')
    with tf.io.TFRecordWriter(other) as w:
        w.write(tf.train.Example(features=tf.train.Features(feature={
            'image/class/label': tf.train.Feature(int64_list=tf.train.Int64List(value=[3]))
        })).SerializeToString())
    code, log = run(train_cmd('--dataset_train', other, *base))
    assert code == 1 and 'classification.record' in log and 'lack' in log
    # Not Example protos at all.
    garbage = str(tmp_path / 'garbage.record')
    with tf.io.TFRecordWriter(garbage) as w:
        w.write(b'\xff\x00 not a protobuf \x12\x34')
    code, log = run(train_cmd('--dataset_train', garbage, *base))
    assert code == 1 and 'garbage.record' in log and 'Traceback' not in log
    # num_classes inconsistent with the converted labels.
    code, log = run(train_cmd('--dataset_train', demo_records[0], '--num_classes', '2',
                              '--class_colors', '', '--class_names', '', *base))
    assert code == 1 and 'converted for 4 classes' in log
    # A checkpoint of another network.
    mobilenet_run = str(tmp_path / 'mobilenet')
    code, log = run(train_cmd('--dataset_train', demo_records[0], '--output_dir', mobilenet_run,
                              '--model', 'mobilenet_v1_fcn', '--depth_multiplier', '0.25',
                              '--max_steps', '1'))
    assert code == 0, log
    assert 'batch_norm_decay 0.9997 averages over about 3333 steps' in log  # fresh BN warned
    code, log = run(train_cmd('--dataset_train', demo_records[0], '--checkpoint_path',
                              os.path.join(mobilenet_run, 'train'), *base))
    assert code == 1 and 'holds none of the model' in log
    # Crop smaller than the network stride.
    code, log = run(train_cmd('--dataset_train', demo_records[0], '--crop_size', '16,16', *base))
    assert code == 1 and 'crop_size' in log
    # A record whose image the decoder rejects, among good ones: skipped and counted.
    mixed = str(tmp_path / 'mixed.record')
    rng = np.random.RandomState(0)
    good_image = cv2.imencode('.png', rng.randint(0, 255, (40, 48, 3), np.uint8))[1].tobytes()
    good_label = cv2.imencode('.png', rng.randint(0, 4, (40, 48)).astype(np.uint8))[1].tobytes()
    with tf.io.TFRecordWriter(mixed) as w:
        for i in range(4):
            image = good_image if i != 2 else good_image[:len(good_image) // 3]
            w.write(example(image, good_label, 40, 48, b'img%d.png' % i))
    code, log = run(train_cmd('--dataset_train', mixed, '--output_dir', str(tmp_path / 'mixed'),
                              '--max_steps', '6'))
    assert code == 0, log
    assert re.search(r'skipped \d+ undecodable record read\(s\) so far \(1 distinct, last: '
                     r'img2.png\)', log), log


@pytest.mark.slow
def test_memory_does_not_grow_over_a_long_run(demo_records, tmp_path):
    out = str(tmp_path / 'run')
    code, log = run(train_cmd('--dataset_train', demo_records[0], '--output_dir', out,
                              '--max_steps', '300', '--log_every', '10', '--save_every', '1000'),
                    timeout=900, process=True)  # the memory of a process of its own
    assert code == 0, log
    rss = {h['step']: h['rss_mb'] for h in read_jsonl(os.path.join(out, 'train',
                                                                   'history.jsonl'))}
    # After warm-up (allocator pools fill in the first steps), the median of each half: single
    # samples swing from 45 MB below it to 70 MB above and back, so the lowest samples of two
    # halves can differ by 45 MB with no growth (2-core EPYC, 3000 steps: medians 1154.3-1154.9
    # MB, benchmarks/memory_growth.py), while a leak lifts the median.
    early = statistics.median(rss[s] for s in range(110, 210, 10))
    late = statistics.median(rss[s] for s in range(210, 310, 10))
    print('RSS by step: %s; medians %.1f -> %.1f MB' % (rss, early, late))
    assert late - early < 25, rss
