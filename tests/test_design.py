"""The design loop from a compute budget (design_for_budget.py): enumeration against
count_ops.py, the choice within budget, resumable training, the report and picture, and the
one line when nothing fits."""
import json
import os
import re

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT, run_script
from utils.deploy.design import (Scenario, best_candidate, choose_candidates,
                                 enumerate_candidates, load_scenario, not_learned_reason,
                                 pareto_front)
from utils.errors import ConfigError

GRID = {'input_sizes': [[64, 96]], 'depth_multipliers': [0.25, 0.5],
        'classifier_kernels': [1, 3], 'classifier_depths': [16, 32]}


def write_scenario(tmp_path, budget_gops, **extra):
    """A tiny scenario on the demo classes: a MobileNet FCN recipe of a few steps."""
    config = yaml.safe_load(open(os.path.join(ROOT, 'configs', 'demo.yaml')))
    config.update(model='mobilenet_v1_fcn', crop_size=[64, 64], batch_size=2,
                  batch_norm_decay=0.9, crf=False, num_eval_images=2)
    (tmp_path / 'tiny.yaml').write_text(yaml.safe_dump(config))
    scenario = dict(GRID, config='tiny.yaml', cameras=2, fps=10, budget_gops=budget_gops,
                    num_trained=2, max_steps=2, format='saved_model')
    scenario.update(extra)
    path = tmp_path / 'scenario.yaml'
    path.write_text(yaml.safe_dump(scenario))
    return str(path)


def test_the_enumeration_counts_as_count_ops_does(tmp_path):
    from utils.config import resolve_config
    from utils.deploy.operations import count_ops
    scenario = load_scenario(write_scenario(tmp_path, 1.0))
    shown = []  # what a progress bar would be given
    candidates = enumerate_candidates(scenario, log=lambda *_: None,
                                      progress=lambda grid: shown.append(len(grid)) or grid)
    assert len(candidates) == 8 and shown == [8]
    config = resolve_config(scenario.config, class_table=False)
    for candidate in candidates:  # the library function count_ops.py prints
        rows = count_ops((64, 96), config.num_classes,
                         **dict(config.network_args(), **candidate['changes']))
        assert candidate['mflops'] == pytest.approx(sum(v for _, v in rows))
    for candidate in (candidates[0], candidates[-1]):  # and the script itself
        changes = candidate['changes']
        code, out = run_script(
            'count_ops.py', '--config', scenario.config, '--model', 'mobilenet_v1_fcn',
            '--depth_multiplier', str(changes['depth_multiplier']), '--classifier_kernel',
            str(changes['classifier_kernel']), '--classifier_depth',
            str(changes['classifier_depth']), '--input_size', '64,96', '--cameras', '2',
            '--fps', '10')
        assert code == 0, out
        total = float(re.search(r'Per image: ([0-9.]+) MFLOPs', out).group(1))
        gops = float(re.search(r'([0-9.]+) GOPS needed', out).group(1))
        assert candidate['mflops'] == pytest.approx(total, abs=0.05), candidate['name']
        assert candidate['gops_needed'] == pytest.approx(gops, abs=0.05)
        assert candidate['fits'] == (candidate['gops_needed'] <= 1.0)


def test_the_choice_keeps_within_budget_and_takes_the_largest():
    candidates = [{'name': 'c%d' % i, 'mflops': i, 'gops_needed': i, 'fits': i <= 10}
                  for i in range(1, 15)]
    chosen = choose_candidates(candidates, 4)
    assert [c['name'] for c in chosen] == ['c1', 'c5', 'c9', 'c10']
    assert all(c['fits'] for c in chosen)
    assert choose_candidates(candidates[:2], 4) == candidates[:2]


def test_pareto_front_and_best_candidate():
    rows = [{'name': 'a', 'gops_needed': 10, 'mean_iou': 0.5, 'images_per_s': 90},
            {'name': 'b', 'gops_needed': 20, 'mean_iou': 0.6, 'images_per_s': 70},
            {'name': 'c', 'gops_needed': 30, 'mean_iou': 0.55, 'images_per_s': 50},
            {'name': 'd', 'gops_needed': 40, 'mean_iou': 0.7, 'images_per_s': 40}]
    for row in rows:
        row.update(baseline_mean_iou=0.1, baseline_class='road')
    assert pareto_front(rows) == ['a', 'b', 'd']
    scenario = Scenario('s', 'x.yaml', cameras=4, fps=15, budget_gops=35)
    assert best_candidate(rows, scenario)['name'] == 'b'  # d over budget, c slower
    assert best_candidate(rows, Scenario('s', 'x.yaml', 4, 30, 35)) is None


def test_a_candidate_that_did_not_learn_is_never_called_best():
    """Below twice the mIoU of predicting the most frequent class everywhere, a candidate
    learned nothing worth judging: it is marked, said why, and never the best; when no usable
    candidate learned, the verdict says so."""
    from utils.deploy.design import report_markdown
    rows = [{'name': 'small', 'mflops': 100, 'gops_needed': 10, 'mean_iou': 0.30,
             'images_per_s': 90, 'export_dir': 'e1'},
            {'name': 'large', 'mflops': 200, 'gops_needed': 20, 'mean_iou': 0.044,
             'images_per_s': 70, 'export_dir': 'e2'}]
    for row in rows:
        row.update(baseline_mean_iou=0.12, baseline_class='road')
    assert not_learned_reason(rows[0]) is None
    assert not_learned_reason(rows[1]) == ('val mIoU 4.4%, less than 2 times the 12.0% of '
                                           'predicting road everywhere')
    scenario = Scenario('s', 'x.yaml', cameras=4, fps=15, budget_gops=35, max_steps=100)
    best = best_candidate(rows, scenario)
    assert best['name'] == 'small'
    text = report_markdown(rows, scenario, best, ['small', 'large'], 'this machine')
    assert '| 4.4 (did not learn) |' in text and '| 30.0 |' in text
    assert '- large did not learn in 100 steps: val mIoU 4.4%' in text
    assert '**small** (val mIoU 30.0' in text
    rows[0]['mean_iou'] = 0.2  # below 2 x 12.0: neither learned
    assert best_candidate(rows, scenario) is None
    text = report_markdown(rows, scenario, None, [], 'this machine')
    assert ('Best candidate meeting the budget and the frame rate: none: the 2 candidate(s) '
            'meeting them did not learn (above)') in text
    assert '**' not in text


def test_the_baseline_is_the_majority_class_everywhere():
    from utils.evaluation.metrics import majority_baseline, scores
    hist = np.array([[0, 0, 0], [0, 60, 0], [0, 0, 40]])  # class 0 absent from the labels
    assert majority_baseline(hist) == (1, pytest.approx(0.6 / 2))  # IoU 0.6 and 0, mean 0.3
    everywhere = np.array([[0, 0, 0], [0, 60, 0], [0, 40, 0]])
    assert majority_baseline(hist)[1] == pytest.approx(scores(everywhere)['mean_iou'])
    assert majority_baseline(np.zeros((3, 3))) == (None, 0.0)


def test_a_scenario_file_with_unknown_keys_is_refused(tmp_path):
    path = write_scenario(tmp_path, 1.0, budget=3)
    with pytest.raises(ConfigError, match='unknown key\\(s\\) budget'):
        load_scenario(path)


def test_a_scenario_nothing_fits_is_one_line(tmp_path):
    path = write_scenario(tmp_path, 0.001)
    code, out = run_script('design_for_budget.py', '--scenario', path, '--work_dir',
                           str(tmp_path / 'work'), '--dataset_train', 'x', '--dataset_val', 'y')
    assert code == 1 and 'Traceback' not in out
    line = [x for x in out.splitlines() if x.startswith('error:')]
    assert re.match(r'error: no candidate fits scenario scenario \(2 camera\(s\) x 10 fps within '
                    r'0\.001 GOPS\): the cheapest, d0\.25_k1_c16_64x96, needs [0-9.]+ GOPS, '
                    r'[0-9.]+ \([0-9]+%\) over', line[0]), out


@pytest.mark.slow
def test_the_loop_trains_within_budget_reports_and_resumes(tmp_path, demo_records):
    probe = enumerate_candidates(load_scenario(write_scenario(tmp_path, 1e9)), log=len)
    budget = probe[5]['gops_needed']  # six of the eight fit
    path = write_scenario(tmp_path, budget)
    work = str(tmp_path / 'work')
    args = ['--scenario', path, '--work_dir', work, '--dataset_train', demo_records[0],
            '--dataset_val', demo_records[1]]
    code, out = run_script('design_for_budget.py', *args)
    assert code == 0, out
    report = json.load(open(os.path.join(work, 'tradeoff.json')))
    trained = [row['name'] for row in report['rows']]
    assert trained == [probe[4]['name'], probe[5]['name']]  # the largest within budget
    assert all(row['gops_needed'] <= budget for row in report['rows'])
    assert not [c for c in probe if c['gops_needed'] > budget and c['name'] in os.listdir(work)]
    for name in ('tradeoff.md', 'tradeoff.png'):
        assert os.path.getsize(os.path.join(work, name)) > 100
    text = open(os.path.join(work, 'tradeoff.md')).read()
    assert 'Best candidate meeting the budget and the frame rate:' in text
    for row in report['rows']:
        assert os.path.isdir(row['export_dir']) and 0 <= row['mean_iou'] <= 1
        assert ('%s did not learn' % row['name'] in text) == bool(not_learned_reason(row))
    assert (report['best'] is None) == all(not_learned_reason(r) for r in report['rows'])
    kept = os.path.join(work, trained[0] + '.result.json')  # as kept before the baseline was
    row = json.load(open(kept))
    baseline = {k: row.pop(k) for k in ('baseline_mean_iou', 'baseline_class')}
    json.dump(row, open(kept, 'w'))
    again_code, again = run_script('design_for_budget.py', *args)
    assert again_code == 0, again
    assert {k: json.load(open(kept))[k] for k in baseline} == baseline
    assert again.count('already trained to step 2, read') == 2
    assert 'training to step' not in again
    code, retimed = run_script('design_for_budget.py', *args, '--retime')
    assert code == 0 and retimed.count('timed again') == 2, retimed


def test_a_scenario_format_that_cannot_be_timed_is_refused_before_training(tmp_path):
    for fmt in ('onxx', 'tflite_int8'):
        with pytest.raises(ConfigError, match='format %r is not one of' % fmt):
            load_scenario(write_scenario(tmp_path, 1.0, format=fmt))
    path = write_scenario(tmp_path, 1.0)
    text = open(path).read().replace('cameras: 2', 'cameras: two')
    open(path, 'w').write(text)
    with pytest.raises(ConfigError, match='scenario'):
        load_scenario(path)


def test_variant_runs_hold_paths_given_from_any_folder(tmp_path, monkeypatch):
    from utils.training.variants import VariantRuns
    monkeypatch.chdir(tmp_path)
    runs = VariantRuns({'num_classes': 2}, 'work', 2, 'a.record,b-*.record', 'v.record', 'c.ckpt')
    assert runs.work_dir == str(tmp_path / 'work')
    assert runs.dataset_train == '%s,%s' % (tmp_path / 'a.record', tmp_path / 'b-*.record')
    assert runs.checkpoint_path == str(tmp_path / 'c.ckpt')


def test_exported_models_are_scored_at_their_input_size_with_maxf(demo_records):
    """score_exported: mIoU from the model's classes and MaxF from its probabilities of the
    positive class, on the records resized to the model's input size."""
    from utils.deploy.design import score_exported
    from utils.deploy.tflite_model import record_pairs

    def perfect(images):  # a model that returns the ground truth (looked up by the image)
        label = truth[images[0].tobytes()]
        probabilities = np.eye(4, dtype=np.float32)[np.minimum(label, 3)][None]
        return [label[None].astype(np.int32), probabilities]

    from utils.deploy.design import label_baseline
    truth = {image.tobytes(): label for image, label in record_pairs(demo_records[1], (32, 48))}
    names = ['sky', 'building', 'road', 'car']
    scored = score_exported(perfect, demo_records[1], (32, 48), names, positive_class=2)
    assert scored['mean_iou'] == pytest.approx(1.0) and scored['max_f'] == pytest.approx(1.0)
    assert score_exported(perfect, demo_records[1], (32, 48), names)['max_f'] is None
    assert 0 < scored['baseline_mean_iou'] < 0.5 and scored['baseline_class'] in names
    assert label_baseline(demo_records[1], (32, 48), names) == {
        k: scored[k] for k in ('baseline_mean_iou', 'baseline_class')}
