"""Tools around training runs: the training-time record of a run, compare_runs.py (the page in
a real browser, TensorBoard HParams, odd inputs), train.py --find_lr (the range test) and
benchmarks/time_to_quality.py."""
import glob
import hashlib
import json
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow.compat.v1 as tf
import yaml

from tests.conftest import page_in_browser, run_script, tiny_config
from utils.config import load_yaml
from utils.training.lr_finder import centred_average, range_config, suggest, valley
from utils.training.monitoring import read_jsonl
from utils.training.trainer import train


def train_tiny(out, demo_records, max_steps, **overrides):
    """A tiny run with a validation every 2 steps; returns `out`."""
    values = dict(dataset_train=demo_records[0], dataset_val=demo_records[1], output_dir=out,
                  max_steps=max_steps, eval_every=2, save_every=2)
    values.update(overrides)
    with tf.Graph().as_default():
        train(tiny_config(**values), log=lambda *_: None)
    return out


@pytest.fixture(scope='module')
def two_runs(demo_records, tmp_path_factory):
    root = tmp_path_factory.mktemp('runs')
    return (train_tiny(str(root / 'slow'), demo_records, 4, learning_rate=1e-5),
            train_tiny(str(root / 'fast'), demo_records, 4, learning_rate=1e-3))


def folder_digest(path):
    """{file: sha1} of everything under `path`."""
    digest = {}
    for name in sorted(glob.glob(os.path.join(path, '**'), recursive=True)):
        if os.path.isfile(name):
            with open(name, 'rb') as f:
                digest[name] = hashlib.sha1(f.read()).hexdigest()
    return digest


def test_training_time_is_recorded_and_goes_on_after_a_resume(demo_records, tmp_path):
    out = str(tmp_path / 'run')
    train_tiny(out, demo_records, 2)
    train_tiny(out, demo_records, 4)  # resumes at step 2
    history = read_jsonl(os.path.join(out, 'train', 'history.jsonl'))
    seconds = [h['train_seconds'] for h in history]
    assert [h['step'] for h in history] == [1, 2, 3, 4]
    assert all(b > a > 0 for a, b in zip(seconds, seconds[1:])), seconds
    validations = read_jsonl(os.path.join(out, 'eval', 'metrics.jsonl'))
    assert [v['step'] for v in validations] == [2, 4]
    assert validations[1]['train_seconds'] == seconds[-1]


def test_compare_runs_writes_the_page_the_plot_and_hparams(two_runs, tmp_path):
    before = {run: folder_digest(run) for run in two_runs}
    out = str(tmp_path / 'compare')
    code, log = run_script('compare_runs.py', *two_runs, '--output_dir', out)
    assert code == 0, log
    assert 'slow: finished (4 steps), best val mIoU' in log, log
    page = open(os.path.join(out, 'compare.html')).read()
    assert os.path.getsize(os.path.join(out, 'compare.png')) > 5000
    differ = re.search(r'<table class="classes settings" id="differ">.*?<tbody>(.*?)</tbody>',
                       page, re.S).group(1)
    assert [k for k in re.findall(r'<tr><td>([a-z_0-9]+)</td>', differ)] == ['learning_rate']
    assert '0.001' in differ and '1e-05' in differ
    # Per class: the starred value of every row is its largest.
    table = re.search(r'<table class="classes per-class">.*?<tbody>(.*?)</tbody>', page, re.S)
    rows = re.findall(r'<tr>(.*?)</tr>', table.group(1))
    assert len(rows) == 4 + 1  # the demo's classes and mIoU
    for row in rows:
        cells = re.findall(r'<td( class="top")?>([-0-9.]+)( &#9733;)?</td>', row)
        values = [float(v) for _, v, _ in cells if v != '-']
        starred = [float(v) for top, v, _ in cells if top]
        assert starred and min(starred) == max(values), row
    # TensorBoard's hparams plugin: the experiment, and one session per run with its scores.
    tags, plugins = set(), set()
    for events in glob.glob(os.path.join(out, 'hparams', '**', 'events.*'), recursive=True):
        for event in tf.train.summary_iterator(events):
            for value in event.summary.value:
                tags.add(value.tag)
                plugins.add(value.metadata.plugin_data.plugin_name)
    assert 'hparams' in plugins and 'best_mean_iou' in tags, (tags, plugins)
    assert len(glob.glob(os.path.join(out, 'hparams', '*', 'events.*'))) == 2
    assert {run: folder_digest(run) for run in two_runs} == before  # nothing in a run changed


def test_the_comparison_shows_complete_in_a_real_browser(two_runs, tmp_path):
    out = str(tmp_path / 'compare')
    assert run_script('compare_runs.py', *two_runs, '--output_dir', out)[0] == 0
    seen = page_in_browser(os.path.join(out, 'compare.html'), tmp_path, '#runs tbody tr')
    assert seen['images'] == 1 and seen['broken'] == [] and seen['rows'] == 2, seen


def test_compare_runs_on_odd_inputs(two_runs, demo_records, tmp_path):
    # Not a run: one line naming the folder.
    code, log = run_script('compare_runs.py', two_runs[0], str(tmp_path), '--output_dir',
                           str(tmp_path / 'c1'))
    assert code == 1 and 'is not a training run' in log and str(tmp_path) in log, log
    # One run: shown alone, and said so.
    code, log = run_script('compare_runs.py', two_runs[0], '--output_dir', str(tmp_path / 'c2'))
    assert code == 0 and 'One run given' in log, log
    assert 'Only one run was given' in open(str(tmp_path / 'c2' / 'compare.html')).read()
    # A run of other classes, still training: its config says 10 steps, its histories end
    # in a torn line (a record being written).
    other = str(tmp_path / 'two')
    shutil.copytree(two_runs[1], other)
    config = load_yaml(os.path.join(other, 'config.yaml'))
    config.update(dataset_name='other', num_classes=2, class_names=['a', 'b'],
                  class_colors=[[0, 0, 0], [255, 255, 255]], class_weights=[], max_steps=10)
    with open(os.path.join(other, 'config.yaml'), 'w') as f:
        yaml.safe_dump(config, f)
    for name in ('train/history.jsonl', 'eval/metrics.jsonl'):
        with open(os.path.join(other, name), 'a') as f:
            f.write('{"step": 5, "loss": 0.')
    code, log = run_script('compare_runs.py', two_runs[0], other, '--output_dir',
                           str(tmp_path / 'c3'))
    assert code == 0, log
    assert 'two: at step 4 of 10 (training, or stopped)' in log, log
    page = open(str(tmp_path / 'c3' / 'compare.html')).read()
    assert 'different datasets or classes' in page
    assert page.count('<table class="classes per-class">') == 2  # one per class set


def test_the_range_test_suggests_a_rate_and_leaves_no_checkpoint(demo_records, tmp_path):
    out = str(tmp_path / 'lr')
    code, log = run_script('train.py', '--config', 'configs/demo_fcn8s.yaml', '--model',
                           'fcn32s', '--fc_depth', '8', '--crop_size', '32,32', '--batch_size',
                           '2', '--crf', 'false', '--dataset_train', demo_records[0],
                           '--output_dir', out, '--find_lr', '--find_lr_min', '1e-5',
                           '--find_lr_max', '10', '--find_lr_steps', '40')
    assert code == 0, log
    line = re.search(r'Suggested learning rate: ([0-9.e+-]+) \(lowest loss at ([0-9.e+-]+)',
                     log)
    assert line, log
    found = json.load(open(os.path.join(out, 'lr_find.json')))
    rates = np.array(found['learning_rates'])
    assert rates[0] == pytest.approx(1e-5, rel=1e-4)
    assert np.allclose(rates[1:] / rates[:-1], (10 / 1e-5) ** (1 / 40), rtol=1e-3)
    assert 1e-5 <= found['suggested_learning_rate'] <= found['lowest_loss_learning_rate'] <= 10
    assert float(line.group(1)) == pytest.approx(found['suggested_learning_rate'], rel=1e-2)
    assert os.path.getsize(os.path.join(out, 'lr_find.png')) > 5000
    assert sorted(os.listdir(out)) == ['lr_find.json', 'lr_find.png']  # nothing to resume
    code, log = run_script('train.py', '--config', 'configs/demo_fcn8s.yaml', '--model',
                           'fcn32s', '--fc_depth', '8', '--crop_size', '32,32', '--batch_size',
                           '1', '--crf', 'false', '--dataset_train', demo_records[0],
                           '--output_dir', out, '--max_steps', '1')
    assert code == 0 and 'Resumed' not in log, log


@pytest.mark.parametrize('flags, named', [
    (['--find_lr_min', '1', '--find_lr_max', '0.1'], '--find_lr_min 1 must be below'),
    (['--find_lr_steps', '5'], '--find_lr_steps 5 is too few'),
    (['--find_lr_max', 'nan'], '--find_lr_max must be a positive finite rate'),
])
def test_the_range_test_refuses_a_wrong_range_in_one_line(flags, named, tmp_path):
    code, log = run_script('train.py', '--config', 'configs/demo_fcn8s.yaml', '--output_dir',
                           str(tmp_path / 'lr'), '--dataset_train', 'nowhere.record',
                           '--find_lr', *flags)
    assert code == 1 and named in log, log
    assert len([line for line in log.splitlines() if line.startswith('error:')]) == 1, log
    assert not os.path.exists(tmp_path / 'lr')


def test_the_suggestion_is_the_middle_of_the_longest_descent():
    rates = list(np.logspace(-6, -1, 51))
    # Falls from 1e-6 to 1e-3 (index 30), flat-ish, then diverges.
    losses = [2.0 - 0.05 * i for i in range(31)] + [0.5 + 0.2 * i for i in range(20)]
    curve = centred_average(losses)
    assert np.argmin(curve) in (29, 30, 31)
    assert valley(curve) in range(13, 18)  # the middle of indices 0..~30
    suggested, lowest, steepest = suggest(rates, losses)
    assert suggested == rates[valley(curve)] and lowest == rates[int(np.argmin(curve))]
    assert steepest <= lowest
    config = range_config(tiny_config(), 1e-6, 1e-1, 50)
    assert config.lr_schedule == 'step' and config.lr_decay_steps == 1
    assert config.learning_rate * config.lr_decay_rate ** 50 == pytest.approx(0.1)


def test_time_to_quality_records_and_draws_curves(two_runs, tmp_path):
    curves = []
    for run in two_runs:
        path = str(tmp_path / (os.path.basename(run) + '.json'))
        code, log = run_script('benchmarks/time_to_quality.py', 'curve', '--run_dir', run,
                               '--label', os.path.basename(run), '--json', path,
                               '--gemm_peak', '180')
        assert code == 0, log
        curves.append(path)
    record = json.load(open(curves[0]))
    points = record['points']
    assert [p['step'] for p in points] == [2, 4]
    for p in points:  # minutes converted at 180 / 90
        assert p['avx2_class_minutes'] == pytest.approx(2 * p['train_minutes'], abs=0.02)
    assert points[1]['pflop'] == pytest.approx(2 * points[0]['pflop'], rel=1e-3)
    png = str(tmp_path / 'ttq.png')
    code, log = run_script('benchmarks/time_to_quality.py', 'plot', *curves, '--output', png)
    assert code == 0 and os.path.getsize(png) > 5000, log
    code, log = run_script('benchmarks/time_to_quality.py', 'plot', png, '--output', png)
    assert code == 1 and 'is not a time-to-quality JSON' in log, log


def test_frozen_blocks_are_credited_with_the_work_they_save():
    from benchmarks.time_to_quality import training_gflops_per_image
    config = tiny_config(model='fcn8s', crop_size='64,64')
    full = training_gflops_per_image(config)
    head_only = training_gflops_per_image(tiny_config(model='fcn8s', crop_size='64,64',
                                                      trainable_scopes='fcn'))
    forward = full / 3
    assert forward < head_only < 1.1 * forward


def test_a_projected_curve_is_timed_by_the_measured_step_and_marked(tmp_path):
    path = str(tmp_path / 'projected.json')
    code, log = run_script('benchmarks/time_to_quality.py', 'projected', '--config',
                           'configs/demo_fcn8s.yaml', '--label', 'long', '--json', path,
                           '--step_seconds', '6', '--gemm_peak', '45', '--scores',
                           '100:0.5,300:0.7')
    assert code == 0, log
    record = json.load(open(path))
    assert record['projected'] is True
    assert [(p['step'], p['train_minutes'], p['avx2_class_minutes']) for p in
            record['points']] == [(100, 10.0, 5.0), (300, 30.0, 15.0)]
    code, log = run_script('benchmarks/time_to_quality.py', 'projected', '--config',
                           'configs/demo_fcn8s.yaml', '--label', 'x', '--json', path,
                           '--step_seconds', '6', '--gemm_peak', '45', '--scores', '100=0.5')
    assert code == 1 and "--scores '100=0.5' is not STEP:MIOU" in log, log
