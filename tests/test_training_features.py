"""Augmentation alignment, schedules, two-stage fine-tuning, signals, NaN, seeds."""
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from nets.inputs import MEAN_RGB
from tests.conftest import ROOT, run_in_process
from utils.config import IGNORE_LABEL, resolve_config
from utils.training.initialization import moving_average_warning
from utils.training.monitoring import read_jsonl
from utils.training.optimization import Optimizers, build_train_op, learning_rate
from utils.data.preprocessing import preprocess_for_train
from utils.training.trainer import train

DEMO = os.path.join(ROOT, 'configs', 'demo_fcn8s.yaml')
FAST = {'fc_depth': '16', 'crop_size': '64,64', 'batch_size': '2', 'log_every': '1'}


def block_scene(size=(96, 128), block=16):
    """An image whose label is derivable from its pixels: label = red // 60 per block."""
    rng = np.random.RandomState(0)
    labels = rng.randint(0, 4, (size[0] // block, size[1] // block))
    labels = np.kron(labels, np.ones((block, block), int)).astype(np.uint8)
    image = np.stack([labels * 60 + 20, rng.randint(0, 256, labels.shape),
                      np.full(labels.shape, 90)], -1).astype(np.uint8)
    return image, labels


@pytest.mark.parametrize('scale', [(1.0, 1.0), (0.6, 1.7)])
def test_augmentations_keep_image_and_label_aligned(scale):
    image, labels = block_scene()
    out_image, out_label = preprocess_for_train(tf.constant(image), tf.constant(labels),
                                                (112, 144), scale[0], scale[1], flip=True,
                                                jitter=False)
    with tf.Session() as sess:
        for _ in range(8):
            img, lab = sess.run([out_image, out_label])
            red = img[..., 0] + MEAN_RGB[0]
            derived = np.clip(np.round((red - 20) / 60), 0, 3)
            valid = lab != IGNORE_LABEL
            # More than one pixel away from block edges (where bilinear resizing mixes the
            # colours of two blocks) image and label must agree; a shift would break this.
            edges = np.zeros(lab.shape, bool)
            for axis in (0, 1):
                step = np.diff(lab, axis=axis) != 0
                pad = [(0, 0), (0, 0)]
                pad[axis] = (0, 1)
                edges |= np.pad(step, pad)
                pad[axis] = (1, 0)
                edges |= np.pad(step, pad)
            distance = cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_C, 3)
            interior = valid & (distance >= 2)
            assert interior.sum() > 0.3 * valid.sum()
            assert (derived[interior] == lab[interior]).all()
            if scale == (1.0, 1.0):
                assert (derived[valid] == lab[valid]).all()
            # Padding (crop larger than the image at scale 1) is void in the label and the
            # mean in the image.
            if scale == (1.0, 1.0):
                assert (~valid).sum() == 112 * 144 - 96 * 128
                np.testing.assert_allclose(img[~valid], 0, atol=1e-4)


def test_photometric_jitter_changes_colours_not_labels():
    image, labels = block_scene()
    out_image, out_label = preprocess_for_train(tf.constant(image), tf.constant(labels),
                                                (96, 128), flip=False, jitter=True)
    with tf.Session() as sess:
        img, lab = sess.run([out_image, out_label])
    np.testing.assert_array_equal(lab, labels)
    assert np.abs(img + np.array(MEAN_RGB) - image).max() > 1


@pytest.mark.parametrize('overrides,expected', [
    ({'lr_schedule': 'fixed'}, {0: 1e-2, 500: 1e-2, 999: 1e-2}),
    ({'lr_schedule': 'step', 'lr_decay_steps': '100', 'lr_decay_rate': '0.5'},
     {0: 1e-2, 99: 1e-2, 100: 5e-3, 250: 2.5e-3}),
    ({'lr_schedule': 'poly', 'lr_power': '0.9'},
     {0: 1e-2, 500: 1e-2 * 0.5 ** 0.9, 1000: 0.0}),
    ({'lr_schedule': 'poly', 'warmup_steps': '10'},
     {0: 1e-3, 4: 5e-3 * (1 - 4 / 1000) ** 0.9, 9: 1e-2 * (1 - 9 / 1000) ** 0.9}),
])
def test_schedule_values(overrides, expected):
    config = resolve_config(None, dict(overrides, learning_rate='0.01', max_steps='1000'))
    step = tf.placeholder(tf.int64, [])
    lr = learning_rate(config, step)
    with tf.Session() as sess:
        for at, value in expected.items():
            assert np.isclose(sess.run(lr, {step: at}), value, rtol=1e-5), at


@pytest.mark.parametrize('optimizer', ['adam', 'rmsprop', 'momentum'])
def test_learning_rate_factors_scale_each_update(optimizer):
    """bias_lr_multiplier and backbone_lr_multiplier scale the first update of each variable
    by their product, with every optimizer (Adam and RMSProp divide a gradient's scale away,
    so scaling gradients would do nothing there)."""
    config = resolve_config(None, {'optimizer': optimizer, 'learning_rate': '0.01',
                                   'momentum': '0', 'bias_lr_multiplier': '2',
                                   'backbone_lr_multiplier': '0.1'})
    expected = {'fcn/score/weights': 1.0, 'fcn/score/biases': 2.0,
                'vgg_16/conv/weights': 0.1, 'vgg_16/conv/biases': 0.2}
    with tf.Graph().as_default():
        step = tf.train.get_or_create_global_step()
        variables = [tf.get_variable(name, [3], initializer=tf.zeros_initializer())
                     for name in expected]
        loss = tf.add_n([tf.reduce_sum(v * [1.0, -2.0, 0.5]) for v in variables])
        train_op = build_train_op(Optimizers(config, learning_rate(config, step)), loss, step,
                                  variables, config)
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            session.run(train_op)
            values, at = session.run([variables, step])
    assert at == 1
    plain = {}  # the update of a factor-1 variable, per element
    for name, value in zip(expected, values):
        plain.setdefault('ref', np.abs(value) / expected[name])
        np.testing.assert_allclose(np.abs(value) / expected[name], plain['ref'], rtol=1e-3,
                                   err_msg=name)


def checkpoint_values(path):
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(('vgg_16/', 'fcn/')) and '/Adam' not in name}


def test_two_stage_training_changes_only_the_head_first(demo_records, tmp_path):
    out = str(tmp_path / 'run')
    base = dict(FAST, dataset_train=demo_records[0], output_dir=out, stage1_steps='3',
                save_every='100')

    def run(steps):
        with tf.Graph().as_default():
            train(resolve_config(DEMO, dict(base, max_steps=str(steps))), log=lambda *_: None)
        return checkpoint_values(os.path.join(out, 'train', 'model.ckpt-%d' % steps))

    first, stage1_end, stage2 = run(1), run(3), run(5)
    for name in first:
        changed = not np.array_equal(first[name], stage1_end[name])
        if name.startswith('vgg_16/'):
            assert not changed, name
        elif name.startswith('fcn/score'):
            assert changed, name
    assert any(not np.array_equal(stage1_end[n], stage2[n]) for n in first
               if n.startswith('vgg_16/conv'))


def test_sigterm_saves_and_resume_continues(demo_records, tmp_path):
    out = str(tmp_path / 'run')
    cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--config', DEMO, '--fc_depth', '16',
           '--crop_size', '64,64', '--batch_size', '2', '--log_every', '1', '--save_every',
           '1000', '--dataset_train', demo_records[0], '--output_dir', out]
    proc = subprocess.Popen(cmd + ['--max_steps', '100000'], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    lines = []
    deadline = time.time() + 300
    for line in proc.stdout:
        lines.append(line)
        if 'step 3 Current Loss' in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=300)
    log = ''.join(lines) + rest
    assert proc.returncode == 0, log
    assert 'Received SIGTERM' in log and 'Traceback' not in log
    latest = tf.train.latest_checkpoint(os.path.join(out, 'train'))
    stopped_at = int(latest.rsplit('-', 1)[1])
    assert stopped_at >= 3
    assert checkpoint_values(latest)  # loadable
    result = run_in_process('train.py', *cmd[2:], '--max_steps', str(stopped_at + 2))
    assert 'Resumed from %s at step %d' % (latest, stopped_at) in result.stdout
    assert 'step %d Current Loss' % (stopped_at + 1) in result.stdout


def test_non_finite_loss_stops_and_keeps_the_good_checkpoint(demo_records, tmp_path):
    out = str(tmp_path / 'run')
    base = dict(FAST, dataset_train=demo_records[0], output_dir=out, save_every='1')
    with tf.Graph().as_default():
        train(resolve_config(DEMO, dict(base, max_steps='1')), log=lambda *_: None)
    good = checkpoint_values(os.path.join(out, 'train', 'model.ckpt-1'))
    result = run_in_process(
        'train.py', '--config', DEMO, '--max_steps', '20', '--optimizer', 'momentum',
        '--learning_rate', '1e30', '--momentum', '0.9',
        *sum([['--' + k, v] for k, v in base.items()], []))
    assert result.returncode == 1
    assert 'non-finite' in result.stderr or 'loss became' in result.stderr, result.stderr
    assert 'Traceback' not in result.stderr
    latest = tf.train.latest_checkpoint(os.path.join(out, 'train'))
    for name, value in checkpoint_values(latest).items():
        assert np.isfinite(value).all(), name
    assert latest.endswith('-1') or all(np.isfinite(v).all() for v in good.values())


def test_same_seed_same_losses(demo_records, tmp_path):
    """Two CPU runs with one seed give the same losses (in subprocesses: determinism is
    process-wide)."""
    histories = []
    for run in ('a', 'b'):
        out = str(tmp_path / run)
        args = dict(FAST, dataset_train=demo_records[0], output_dir=out, max_steps='4',
                    seed='7', deterministic='true', min_scale='0.8', max_scale='1.2')
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, 'train.py'), '--config', DEMO]
            + sum([['--' + k, v] for k, v in args.items()], []),
            capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert result.returncode == 0, result.stderr
        histories.append([h['loss'] for h in read_jsonl(os.path.join(out, 'train',
                                                                     'history.jsonl'))])
    assert len(histories[0]) == 4
    assert histories[0] == histories[1]


def test_monitoring_outputs(trained_run):
    from tests.conftest import ROOT as _  # noqa: F401
    history = read_jsonl(os.path.join(trained_run, 'train', 'history.jsonl'))
    assert [h['step'] for h in history][-1] == 3
    assert any(n.startswith('events.out.tfevents') for n in
               os.listdir(os.path.join(trained_run, 'train')))


@pytest.mark.parametrize('scale', [0.6, 1.6, 2.3])
def test_random_scale_keeps_label_boundaries_on_the_image_edges(scale):
    """Image and label resized by the same factor: the label's class boundary (nearest) must
    sit where the image's step edge (bilinear) crosses half height, within half a pixel, as
    both use half-pixel centres. The legacy v1 resize put it +0.25 to +0.5 px off."""
    from utils.data.preprocessing import random_scale
    width, edge = 41, 17  # columns 0..16 dark / class 0, 17.. bright / class 1
    image = np.zeros((9, width, 3), np.float32)
    image[:, edge:] = 255.0
    label = np.zeros((9, width), np.int32)
    label[:, edge:] = 1
    out_image, out_label = random_scale(tf.constant(image), tf.constant(label), scale, scale)
    with tf.Session() as session:
        out_image, out_label = session.run([out_image, out_label])
    row = out_image[4, :, 0]
    crossing = np.flatnonzero(row >= 127.5)[0]  # first column at or past half height
    fraction = (127.5 - row[crossing - 1]) / (row[crossing] - row[crossing - 1])
    image_edge = crossing - 1 + fraction + 0.5  # continuous coordinate of the crossing
    label_edge = np.flatnonzero(out_label[4] == 1)[0]  # boundary between two pixels
    assert abs(image_edge - label_edge) <= 0.5, (image_edge, label_edge)
    assert abs(label_edge - edge * scale) <= 0.5 + 1e-6


def test_the_plotted_loss_is_smoothed_as_tensorboard_does():
    from utils.training.monitoring import smoothed
    values = [1.0, 0.0, 1.0, 0.0] * 50
    out = smoothed(values, 0.9)
    assert out[0] == 1.0  # debiased: the first point is the value itself
    assert abs(out[-1] - 0.5) < 0.06 and max(out[100:]) - min(out[100:]) < 0.12


def test_precision_auto_picks_bfloat16_only_on_a_bfloat16_cpu_without_gpu(tmp_path):
    from utils.runtime import cpu_bfloat16_flags, resolve_precision
    bf16 = ('avx512_bf16',)
    assert resolve_precision('auto', gpus=[], bf16_flags=bf16, environ={})[0] == 'mixed_bfloat16'
    assert resolve_precision('auto', 'mirrored', gpus=[], bf16_flags=bf16,
                             environ={})[0] == 'mixed_bfloat16'
    assert resolve_precision('auto', 'multi_worker', gpus=[], bf16_flags=bf16)[0] == 'float32'
    assert resolve_precision('auto', gpus=[], bf16_flags=())[0] == 'float32'
    # ONEDNN_MAX_CPU_ISA=AVX2 makes a bfloat16 CPU behave as the AVX2 class: float32.
    capped = resolve_precision('auto', gpus=[], bf16_flags=bf16,
                               environ={'ONEDNN_MAX_CPU_ISA': 'AVX2'})
    assert capped[0] == 'float32' and 'ONEDNN_MAX_CPU_ISA=AVX2' in capped[1]
    assert resolve_precision('auto', gpus=[], bf16_flags=bf16, environ={
        'ONEDNN_MAX_CPU_ISA': 'AVX512_CORE_AMX'})[0] == 'mixed_bfloat16'
    assert resolve_precision('auto', gpus=['GPU:0'], bf16_flags=('amx_bf16',))[0] == 'float32'
    assert resolve_precision('float32', gpus=[], bf16_flags=bf16)[0] == 'float32'
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx2\n')
    assert cpu_bfloat16_flags(str(cpuinfo)) == ('avx512_bf16',)
    cpuinfo.write_text('processor\t: 0\nflags\t\t: fpu avx2\n')
    assert cpu_bfloat16_flags(str(cpuinfo)) == ()
    assert cpu_bfloat16_flags(str(tmp_path / 'missing')) == ()


def test_moving_averages_that_cannot_settle_are_warned_about():
    fresh = ['MobilenetV1/Conv2d_0/BatchNorm/moving_mean']
    warning = moving_average_warning(fresh, 0.9997, 1200)
    assert 'batch_norm_decay 0.9997 averages over about 3333 steps' in warning
    assert '--batch_norm_decay 0.991 or lower' in warning
    # Its suggestion settles: a window of a tenth of the run.
    assert moving_average_warning(fresh, 0.991, 1200) is None
    assert moving_average_warning(fresh, 0.9997, 60000) is None
    assert moving_average_warning([], 0.9997, 1200) is None  # restored from a checkpoint


def test_batch_norms_that_start_fresh_get_a_decay_that_suits_the_run(tmp_path):
    """A short run of a batch-normalised network from scratch trains with a window of a tenth
    of its steps; a long run, a network without batch norm, or a checkpoint that brings its
    statistics keep the configured decay."""
    from tests.conftest import tiny_config
    from utils.training.initialization import suited_batch_norm_decay
    short = tiny_config(model='mobilenet_v1_fcn', batch_norm_decay=0.99, max_steps=300)
    decay, why = suited_batch_norm_decay(short, takes_decay=True)
    assert decay == 0.966 and 'batch_norm_decay 0.99 averages over about 100 steps' in why
    assert 'training with 0.966 instead' in why
    assert suited_batch_norm_decay(short, takes_decay=False) == (0.99, None)  # VGG
    long = tiny_config(model='mobilenet_v1_fcn', batch_norm_decay=0.99, max_steps=3000)
    assert suited_batch_norm_decay(long, takes_decay=True) == (0.99, None)
    # A checkpoint with batch-norm statistics: they are restored, not fresh.
    with tf.Graph().as_default():
        tf.Variable(tf.zeros([4]), name='MobilenetV1/Conv2d_0/BatchNorm/moving_mean')
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            path = tf.train.Saver().save(session, str(tmp_path / 'bn.ckpt'))
    restored = tiny_config(model='mobilenet_v1_fcn', batch_norm_decay=0.99, max_steps=300,
                           checkpoint_path=path)
    assert suited_batch_norm_decay(restored, takes_decay=True) == (0.99, None)
    excluded = tiny_config(model='mobilenet_v1_fcn', batch_norm_decay=0.99, max_steps=300,
                           checkpoint_path=path, checkpoint_exclude_scopes='MobilenetV1')
    assert suited_batch_norm_decay(excluded, takes_decay=True)[0] == 0.966
