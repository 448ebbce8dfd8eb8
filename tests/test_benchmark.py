"""benchmarks/benchmark.py runs end to end on a tiny dataset and prints its tables."""
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT, job_module, run_in_process
from benchmarks import measurements
from utils.data.demo import write_demo_dataset


def test_benchmark_prints_every_section(tmp_path):
    data_dir = write_demo_dataset(str(tmp_path / 'scenes'), 4, 2, 64, 96)
    result = run_in_process(
        'benchmarks/benchmark.py', '--sections', 'train,inference,crf,convert',
        '--config', os.path.join(ROOT, 'configs', 'demo_fcn8s.yaml'),
        '--sizes', '64,64', '--steps', '1', '--data_dir', data_dir, '--convert_repeats', '1')
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    row = re.search(r'\| 64x64 \| float32 \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|', out)
    assert row and all(float(v) > 0 for v in row.groups()), out
    assert re.search(r'## Inference .*\n.*\n.*\n\| 64x64 \| [0-9.]+ \|', out), out
    assert re.search(r'\| 2 val images of .*, 64x96, FCN-like scores \| [0-9]+ \|', out), out
    assert re.search(r'\| uniform-noise 360x480 image.* \| [0-9]+ \|', out), out
    # One worker, then one per core where there are several (a test worker may have one).
    assert re.search(r'## Conversion .*median of 1\): 1 worker\(s\) [0-9.]+ img/s'
                     r'(, [0-9] worker\(s\) [0-9.]+ img/s)?; scaling [0-9.]+x', out), out
    assert 'Peak memory (RSS)' in out


def test_crf_inputs_follow_the_annotation(tmp_path):
    data_dir = write_demo_dataset(str(tmp_path / 'scenes'), 1, 2, 64, 96)
    inputs = measurements.crf_inputs(data_dir, 'val', num_classes=4)
    assert len(inputs) == 2
    names = sorted(os.listdir(os.path.join(data_dir, 'valannot')))
    for (image, probabilities), name in zip(inputs, names):
        label = cv2.imread(os.path.join(data_dir, 'valannot', name), cv2.IMREAD_UNCHANGED)
        assert image.shape == (64, 96, 3) and image.dtype == np.uint8
        assert probabilities.shape == (64, 96, 4)
        np.testing.assert_allclose(probabilities.sum(-1), 1, rtol=1e-5)
        # Blurred at stride 8 and noisy, the scores still name the annotated class on most
        # labelled pixels.
        labelled = label < 4
        assert (probabilities.argmax(-1) == label)[labelled].mean() > 0.7


def test_benchmark_times_the_crf_on_a_runs_real_outputs(tmp_path, trained_run, demo_records):
    data_dir = write_demo_dataset(str(tmp_path / 'scenes'), 1, 2, 64, 96)
    result = run_in_process('benchmarks/benchmark.py', '--sections', 'crf', '--data_dir',
                            data_dir, '--run_dir', trained_run, '--dataset', demo_records[1])
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert re.search(r'\| 3 images of .*, real outputs of .* \| [0-9]+ \|', out), out
    assert re.search(r'\| the same, all [0-9]+ cores \(CrfPool\), wall \| [0-9]+ \|', out), out
    for what in ('without CRF', r'with CRF \(all cores\)'):
        assert re.search(r'\| %s \| 3 \| [0-9.]+ \| [0-9.]+ \| [01]\.[0-9]{4} \|' % what, out), out


def test_ablation_trains_each_variant_and_resumes(tmp_path, demo_records):
    import json
    import yaml
    base = yaml.safe_load(open(os.path.join(ROOT, 'configs', 'demo_fcn8s.yaml')))
    base.update(fc_depth=16, crop_size=[64, 64], batch_size=2, crf=False, num_eval_images=2)
    config = tmp_path / 'base.yaml'
    config.write_text(yaml.safe_dump(base))
    variants = tmp_path / 'variants.yaml'
    variants.write_text('baseline: {}\nhigher_lr: {learning_rate: 0.001}\n')
    work = tmp_path / 'work'
    cmd = ['benchmarks/ablation.py', '--config', str(config), '--variants', str(variants),
           '--work_dir', str(work), '--max_steps', '2', '--dataset_train', demo_records[0],
           '--dataset_val', demo_records[1]]
    result = run_in_process(*cmd)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    rows = re.findall(r'^\| (baseline|higher_lr) \| (.*) \| 2 \| [0-9]+ min \| [0-9.]+ \([12]\) \| '
                      r'- \| [0-9.]+ \|$', result.stdout, re.M)
    assert [name for name, _ in rows] == ['baseline', 'higher_lr'], result.stdout
    assert rows[1][1] == 'learning_rate 0.001'
    assert len(json.load(open(str(work / 'ablation.json')))) == 2
    assert not os.path.exists(str(work / 'baseline' / 'train'))  # checkpoints removed
    again = run_in_process(*cmd)
    assert again.returncode == 0 and again.stdout == result.stdout  # read, not retrained
    variants.write_text('baseline: {}\nwrong: {learning_rat: 0.1}\n')
    bad = run_in_process(*cmd)
    assert bad.returncode == 1 and 'variant wrong: unknown config key' in bad.stdout + bad.stderr


def test_a_peer_that_crashes_is_one_line_not_the_end_of_the_benchmark(tmp_path, capsys):
    benchmark = job_module('benchmarks/benchmark.py')
    good = tmp_path / 'good.py'
    good.write_text('print("imgs_per_s=1.5")\n')
    bad = tmp_path / 'bad.py'
    bad.write_text('import sys\nsys.exit("malloc(): unaligned tcache chunk detected")\n')
    assert benchmark.run_peer(str(good), '--batch', '4') == 1.5
    assert benchmark.run_peer(str(bad), '--batch', '4') is None
    assert ('peer bad.py --batch 4 printed no imgs_per_s in 2 runs (exit 1: malloc(): '
            'unaligned tcache chunk detected)') in capsys.readouterr().out


def test_profile_step_says_where_a_training_step_goes():
    result = run_in_process('benchmarks/profile_step.py', '--config',
                            os.path.join(ROOT, 'configs', 'demo.yaml'), '--size', '64,64',
                            '--batch_size', '1', '--steps', '1', '--top', '5')
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert re.search(r'^Step: [0-9]+ ms median of 1 \([0-9.]+ img/s, [0-9]+ GFLOP/s = [0-9]+% '
                     r'of the peak\)', out, re.M), out
    shares = dict(re.findall(r'^\| (forward|backward|optimizer) \| [0-9.]+ \| ([0-9.]+)% \|$',
                             out, re.M))
    assert set(shares) == {'forward', 'backward', 'optimizer'}, out
    assert abs(sum(float(v) for v in shares.values()) - 100) < 0.5
    assert re.search(r'^\| Conv2DBackpropFilter \| [0-9.]+ \| [0-9.]+% \|$', out, re.M), out
    assert '| node | ms/step | share |' in out


def test_the_avx2_class_hides_avx512_from_every_library_of_the_process():
    """benchmarks/avx2_class/run.sh: numpy's kernel dispatch (read from CPUID) sees no AVX-512,
    and cpu_class() says which class the figures of that process come from."""
    import shutil
    if not shutil.which('cc'):
        pytest.skip('no C compiler to build benchmarks/avx2_class')
    if 'cpuid_fault' not in open('/proc/cpuinfo').read():
        pytest.skip('this CPU offers no CPUID faulting')
    script = ('from numpy._core._multiarray_umath import __cpu_features__ as f; '
              'from utils.runtime import cpu_class; print(f["AVX2"], f["AVX512F"], cpu_class())')
    result = subprocess.run([os.path.join(ROOT, 'benchmarks', 'avx2_class', 'run.sh'),
                             sys.executable, '-c', script], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    avx2, avx512, machine = result.stdout.strip().split(' ', 2)
    assert (avx2, avx512) == ('True', 'False'), result.stdout
    assert 'AVX2 class' in machine and 'AVX512-BF16' not in machine
