"""Know your data, as a user runs it: evaluate.py's boundary F, calibration and annotations
that look wrong; predict.py --save_probabilities (whole, tiled, exported)."""
import csv
import json
import os
import shutil

import cv2
import numpy as np

from tests.conftest import page_in_browser, run_script
from tests.test_jobs import records
from utils.deploy.export import export_model
from utils.evaluation.boundary import BoundaryScore
from utils.evaluation.suspects import suspect_regions
from utils.inference.predictor import Predictor
from utils.inference.soft_outputs import normalised_entropy
from utils.rundir import load_run


def test_evaluate_scores_boundaries_calibration_and_suspect_annotations(trained_run,
                                                                       demo_records, tmp_path):
    out = str(tmp_path / 'eval')
    # A low threshold and area, so that the tiny run (a few steps) has regions to show.
    code, log = run_script('evaluate.py', '--run_dir', trained_run, '--dataset',
                           demo_records[1], '--output_dir', out, '--draw', 'none',
                           '--suspect_confidence', '0.3', '--suspect_min_area', '4',
                           '--boundary_tolerance', '3')
    assert code == 0, log
    metrics = json.load(open(os.path.join(out, 'metrics.json')))
    # The same scores through Predictor and the library, image by image.
    predictor = Predictor.from_run(trained_run)
    n = predictor.config.num_classes
    boundary = BoundaryScore(n, 3)
    expected_regions = []
    for image, label in records(demo_records[1]):
        probabilities = predictor.predict(image)
        boundary.add(label, probabilities.argmax(-1))
        expected_regions += suspect_regions(label, probabilities, 0.3, 4)
    assert metrics['boundary']['per_class_boundary_f'] == boundary.result()[
        'per_class_boundary_f']
    assert 'boundary' in metrics['crf']  # the demo config's CRF is on: its boundaries too
    assert 0 <= metrics['calibration']['ece'] <= 1
    assert sum(b['count'] for b in metrics['calibration']['bins']) == sum(
        int(((label >= 0) & (label < n)).sum()) for _, label in records(demo_records[1]))
    with open(os.path.join(out, 'suspect_labels.csv')) as f:
        rows = list(csv.DictReader(f))
    assert expected_regions and len(rows) == len(expected_regions)
    assert sorted(int(r['area']) for r in rows) == sorted(r[0] for r in expected_regions)
    scores = [float(r['score']) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(r['annotated_class'] != r['predicted_class'] for r in rows)
    assert 'Boundary F' in log and 'calibration error (ECE)' in log
    page = open(os.path.join(out, 'report.html')).read()
    for part in ('Calibration', 'Annotations that look wrong', 'boundary F', 'reliability.png',
                 'rank1_img.jpg'):
        assert part in page, part
    shown = min(len(rows), 12)
    seen = page_in_browser(os.path.join(out, 'report.html'), tmp_path, '#suspects .sample')
    assert seen['broken'] == [] and seen['rows'] == shown, seen
    code, log = run_script('evaluate.py', '--run_dir', trained_run, '--dataset',
                           demo_records[1], '--output_dir', out, '--suspect_confidence', '1.5')
    assert code == 2 and '--suspect_confidence' in log, log


def test_predict_saves_probabilities_whole_tiled_and_exported(trained_run, tmp_path):
    inputs = tmp_path / 'in'
    os.makedirs(inputs)
    rng = np.random.RandomState(4)
    image = cv2.GaussianBlur(rng.randint(0, 256, (70, 90, 3), np.uint8), (0, 0), 3)
    cv2.imwrite(str(inputs / 'scene.png'), image)
    config, checkpoint = load_run(trained_run)
    export_dir = str(tmp_path / 'exported')
    export_model(config, checkpoint, export_dir, ('onnx',), input_size=(70, 90))
    runs = {'whole': ['--run_dir', trained_run],
            'small': ['--run_dir', trained_run, '--max_side', '48'],
            'tiled': ['--run_dir', trained_run, '--tile', '48', '--tile_overlap', '16'],
            'crf': ['--run_dir', trained_run, '--crf'],
            'onnx': ['--exported', os.path.join(export_dir, 'model.onnx')]}
    saved = {}
    for name, source in runs.items():
        out = str(tmp_path / name)
        code, log = run_script('predict.py', *source, '--input', str(inputs), '--output_dir',
                               out, '--save_probabilities')
        assert code == 0, (name, log)
        probabilities = np.load(os.path.join(out, 'scene_probabilities.npy'))
        assert probabilities.dtype == np.float16 and probabilities.shape == (70, 90, 4), name
        probabilities = probabilities.astype(np.float32)
        np.testing.assert_allclose(probabilities.sum(-1), 1, atol=5e-3)
        label = cv2.imread(os.path.join(out, 'scene_label.png'), cv2.IMREAD_UNCHANGED)
        if name != 'crf':  # the class map is the argmax of what was saved (float16 ties aside)
            assert (probabilities.argmax(-1) == label).mean() > 0.995, name
        uncertainty = cv2.imread(os.path.join(out, 'scene_uncertainty.png'))
        assert uncertainty.shape[1] == 90 and uncertainty.shape[0] > 70, name
        saved[name] = probabilities
    # The CRF changes the class map, not the saved network probabilities.
    np.testing.assert_allclose(saved['crf'], saved['whole'], atol=2e-3)
    np.testing.assert_allclose(saved['onnx'], saved['whole'], atol=2e-3)
    # The whole image's probabilities straight from the run, against the file.
    direct = Predictor.from_run(trained_run).predict(cv2.imread(str(inputs / 'scene.png'))[
        ..., ::-1])
    np.testing.assert_allclose(saved['whole'], direct, atol=1e-3)
    assert 0 <= normalised_entropy(direct).mean() <= 1
    assert not any(n.endswith('.tmp') for n in os.listdir(tmp_path / 'tiled'))


def test_rank_for_labeling_ranks_skips_and_lists_each_scene_once(trained_run, tmp_path):
    from utils.data.demo import make_scene
    folder = tmp_path / 'unlabelled'
    os.makedirs(folder)
    rng = np.random.RandomState(5)
    for k in range(6):
        image, _ = make_scene(rng, 64, 80)
        cv2.imwrite(str(folder / ('scene%d.png' % k)), image[..., ::-1])
    for k in range(3):  # exact copies of three scenes
        shutil.copyfile(folder / ('scene%d.png' % k), folder / ('copy%d.png' % k))
    noise = cv2.GaussianBlur(rng.randint(0, 256, (300, 260, 3), np.uint8), (0, 0), 2)
    cv2.imwrite(str(folder / 'big_noise.png'), noise)  # larger than the tile: tiled
    (folder / 'notes.txt').write_text('not an image')
    out = str(tmp_path / 'rank')
    code, log = run_script('rank_for_labeling.py', '--run_dir', trained_run, '--input',
                           str(folder), '--output_dir', out, '--top', '5', '--tile', '64')
    assert code == 0, log
    assert 'notes.txt' in log and 'skipped' in log
    with open(os.path.join(out, 'to_label.csv')) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10
    scores = [float(r['mean_uncertainty']) for r in rows]
    assert scores == sorted(scores, reverse=True)
    # Each row's score is the mean normalised entropy of the tiled probabilities.
    predictor = Predictor.from_run(trained_run)
    from utils.inference.ranking import mean_uncertainty
    from utils.inference.tiling import Tiling
    by_name = {os.path.basename(r['image']): r for r in rows}
    scene = cv2.imread(str(folder / 'scene4.png'))[..., ::-1]
    assert abs(float(by_name['scene4.png']['mean_uncertainty'])
               - mean_uncertainty(predictor, scene, 0, Tiling(64, 16))) < 1e-4
    selected = [os.path.basename(r['image']) for r in rows if r['selected'] == 'True']
    assert len(selected) == 5
    for k in range(3):  # a copy and its original: one is marked the other's duplicate
        names = {'scene%d.png' % k, 'copy%d.png' % k}
        marked = [n for n in names if by_name[n]['duplicate_of']]
        assert len(marked) == 1 and os.path.basename(
            by_name[marked[0]]['duplicate_of']) in names, (k, by_name)
        assert len(names & set(selected)) <= 1
    seen = page_in_browser(os.path.join(out, 'to_label.html'), tmp_path, '.sample')
    assert seen['rows'] == 5 and seen['broken'] == [], seen


def test_a_model_that_gives_class_maps_only_is_refused_in_one_line(trained_run, tmp_path):
    import onnx
    config, checkpoint = load_run(trained_run)
    export_dir = str(tmp_path / 'exported')
    export_model(config, checkpoint, export_dir, ('onnx',), input_size=(64, 64))
    model = onnx.load(os.path.join(export_dir, 'model.onnx'))
    kept = [o for o in model.graph.output if o.name.startswith('classes')]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    onnx.save(model, os.path.join(export_dir, 'model.onnx'))
    image = tmp_path / 'in.png'
    cv2.imwrite(str(image), np.zeros((64, 64, 3), np.uint8))
    for script in ('rank_for_labeling.py', 'predict.py'):
        code, log = run_script(script, '--exported', os.path.join(export_dir, 'model.onnx'),
                               '--input', str(image), '--output_dir', str(tmp_path / script))
        assert code != 0 and 'gives class maps only' in log and 'export_model.py' in log, log
        assert 'Traceback' not in log
