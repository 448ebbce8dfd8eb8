"""report.html (one page of an evaluation, checked in a real browser) and the two-class scores
(MaxF, AP) against an independent computation."""
import json
import os
import re

import numpy as np
import pytest

import evaluate
from tests.conftest import page_in_browser
from utils.errors import ConfigError
from utils.evaluation.binary import NUM_BINS, BinaryCurve, positive_class_of


def test_binary_scores_match_scikit_learn():
    metrics = pytest.importorskip('sklearn.metrics')
    rng = np.random.RandomState(3)
    labels = rng.randint(0, 2, (4, 30, 40))
    labels[:, :2] = 255  # void rows are left out
    # Probabilities on the histogram's grid (bin centres), so that both see the same scores.
    noisy = np.clip(labels * 0.35 + rng.rand(*labels.shape) * 0.65, 0, 0.9999)
    probability = (np.floor(noisy * NUM_BINS) + 0.5) / NUM_BINS
    curve = BinaryCurve(positive_class=1)
    for label, prob in zip(labels, probability):
        curve.add(label, prob)
    result = curve.result()
    valid = labels != 255
    truth, score = labels[valid] == 1, probability[valid]
    precision, recall, thresholds = metrics.precision_recall_curve(truth, score)
    f_measure = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    assert result['max_f'] == pytest.approx(f_measure.max(), abs=1e-4)
    assert result['average_precision'] == pytest.approx(
        metrics.average_precision_score(truth, score), abs=1e-4)
    called = score >= result['threshold']
    tp, fp = (called & truth).sum(), (called & ~truth).sum()
    fn, tn = (~called & truth).sum(), (~called & ~truth).sum()
    assert result['precision'] == pytest.approx(tp / (tp + fp), abs=1e-9)
    assert result['recall'] == pytest.approx(tp / (tp + fn), abs=1e-9)
    assert result['fpr'] == pytest.approx(fp / (fp + tn), abs=1e-9)
    assert result['fnr'] == pytest.approx(fn / (fn + tp), abs=1e-9)
    assert result['positive_pixels'] == truth.sum()


def test_binary_scores_without_positive_pixels_are_none():
    curve = BinaryCurve(positive_class=1)
    curve.add(np.zeros((3, 3), int), np.full((3, 3), 0.2))
    assert curve.result()['max_f'] is None


def test_the_positive_class_of_a_config():
    from utils.config import resolve_config
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    kitti = resolve_config(os.path.join(root, 'configs', 'kitti_road_fcn8s.yaml'))
    assert positive_class_of(kitti) == kitti.class_names.index('road')
    demo = resolve_config(os.path.join(root, 'configs', 'demo.yaml'))
    assert positive_class_of(demo) is None
    assert positive_class_of(demo, 'car') == 3 and positive_class_of(demo, '2') == 2
    with pytest.raises(ConfigError, match='--positive_class bus is no class'):
        positive_class_of(demo, 'bus')


def demo_records_val(report):
    return json.load(open(os.path.join(report, 'metrics.json')))['data']['record_files'][0]


@pytest.fixture(scope='module')
def report(trained_run, demo_records, tmp_path_factory):
    """An evaluation of the tiny run with the CRF and road as the positive class."""
    out = str(tmp_path_factory.mktemp('report') / 'eval')
    code = evaluate.main(['--run_dir', trained_run, '--dataset', demo_records[1],
                          '--output_dir', out, '--draw', 'none', '--gallery', '1', '--crf',
                          '--positive_class', 'road'])
    assert code == 0
    return out


def test_the_report_holds_every_part_and_opens_offline(report):
    page = open(os.path.join(report, 'report.html')).read()
    for part in ('Scores with CRF, % (3 images)', 'without CRF',
                 'Two-class scores: road against the rest', 'MaxF', 'Per class, %',
                 'Confusion with CRF', 'Training', 'Worst images by mIoU with CRF',
                 'Best images by mIoU with CRF', 'The 1 worst of 3 images', 'Settings',
                 'record files', 'void (not scored)'):
        assert part in page, part
    # The header names the dataset, the records, the date and the code; the large figure is
    # the setting the evaluation ran with (the CRF's), the network's own beside it.
    header = re.search(r'</h1><p class="sub">(.*?)</p>', page).group(1)
    assert header.startswith('demo &middot; %s &middot; evaluated 20' % demo_records_val(report))
    assert re.search(r'code ([0-9a-f]{7,}(-dirty)?|unknown)$', header), header
    metrics = json.load(open(os.path.join(report, 'metrics.json')))
    first_card = re.search(r'<div class="v">([\d.]+)</div><div class="k">mean IoU</div>'
                           r'<div class="c">without CRF ([\d.]+)</div>', page)
    assert first_card.groups() == ('%.1f' % (100 * metrics['crf']['mean_iou']),
                                   '%.1f' % (100 * metrics['mean_iou']))
    # Only the settings the network takes (an FCN-8s has no depth multiplier).
    network = re.search(r'<td>network</td><td>(.*?)</td>', page).group(1)
    assert network.startswith('fcn8s (fc_depth 16') and 'depth_multiplier' not in network
    assert '<script' not in page and not re.search(r'(src|href)="(https?:)?//', page)
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    with open(os.path.join(report, 'suspect_labels.csv')) as f:
        suspects = min(12, len(f.read().splitlines()) - 1)
    # The progress plot, two samples of five pictures, the reliability diagram, three crops of
    # each annotation that looks wrong.
    assert len(sources) == 1 + 2 * 5 + 1 + 3 * suspects
    for source in sources:
        assert os.path.isfile(os.path.join(report, source)), source
    rows = re.search(r'<table class="classes" id="per-class">.*?<tbody>(.*?)</tbody>', page)
    assert rows.group(1).count('<tr>') == 4
    assert 0 <= metrics['binary']['max_f'] <= 1 and metrics['binary']['positive_class'] == 2


def test_the_report_shows_complete_in_a_real_browser(report, tmp_path):
    seen = page_in_browser(os.path.join(report, 'report.html'), tmp_path, '#per-class tbody tr')
    assert seen['images'] >= 12 and seen['broken'] == [] and seen['rows'] == 4, seen


def test_galleries_spread_over_the_records_and_say_when_they_hold_every_image():
    from utils.evaluation.report_page import gallery_notes
    from utils.evaluation.scoring import spread_out
    candidates = [(r, None) for r in (10, 11, 12, 40, 13, 80, 41)]  # worst first
    assert [r for r, _ in spread_out(candidates, 3, 5)] == [10, 40, 80]
    assert [r for r, _ in spread_out(candidates, 5, 5)] == [10, 40, 80, 11, 12]
    assert [r for r, _ in spread_out(candidates, 2, 5, taken={10})] == [11, 40]
    assert gallery_notes({'worst': [1, 2], 'best': [3, 4]}, 4)[0] == (
        'These two galleries hold every one of the 4 images, worst first.')
    assert gallery_notes({'worst': [1], 'best': [3]}, 9)[0].startswith('The 1 worst of 9 images')


def test_sample_pictures_overlay_the_headlined_prediction_with_a_legend(tmp_path):
    import cv2
    from utils.visualization import (LEGEND_ROW, VOID_COLORS, legend_strip, void_color,
                                     write_sample_jpegs)
    palette = np.array([[0, 0, 0], [255, 255, 255], [200, 0, 0]], np.uint8)  # black, white
    assert void_color(palette) == VOID_COLORS[1]  # neither black nor white: magenta
    image = np.full((64, 96, 3), 128, np.uint8)
    label = np.zeros((64, 96), np.uint8)
    network, crf = np.zeros_like(label), np.full_like(label, 2)
    paths = write_sample_jpegs(str(tmp_path), 's', image, label, network, crf, palette, 1.0,
                               ['background', 'paper', 'car'])
    pictures = {os.path.basename(p)[2:-4]: cv2.imread(p)[..., ::-1] for p in paths}
    assert pictures['img'].shape == (64, 96, 3)
    rows = legend_strip(96, palette, ['background', 'paper', 'car']).shape[0]
    assert rows % LEGEND_ROW == 0 and rows >= 2 * LEGEND_ROW  # wrapped to the width
    # Readable on a large picture: drawn larger, so a 2048-wide one gets a taller strip.
    names = ['background', 'paper', 'car']
    assert legend_strip(2048, palette, names).shape[0] == 3 * legend_strip(640, palette,
                                                                         names).shape[0]
    # Each picture lists the classes it shows: one class, one row.
    for kind in ('annotation', 'prediction', 'prediction_crfed', 'overlay'):
        assert pictures[kind].shape == (64 + LEGEND_ROW, 96, 3), kind
    # alpha 1: the overlay is the CRF's class map (red), not the network's (black).
    assert np.abs(pictures['overlay'][:56].astype(int) - (200, 0, 0)).max() < 30  # JPEG edge
