"""evaluate.py, predict.py and export_model.py on a tiny trained run."""
import csv
import json
import os

import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tests.conftest import run_script as run_job
from utils.deploy.export import export_model, parity_check
from utils.deploy.saved_model import FROZEN_GRAPH_FILENAME, ExportedModel, FrozenModel
from utils.crf import CrfPool
from utils.inference.predictor import Predictor
from utils.rundir import load_run
from utils.evaluation.metrics import confusion_matrix, scores
from utils.data.records import parse_example


def records(path):
    """[(image, label)] of a record file."""
    item = tf.data.make_one_shot_iterator(tf.data.TFRecordDataset([path]).map(parse_example))
    item = item.get_next()
    out = []
    with tf.Session() as sess:
        try:
            while True:
                ex = sess.run(item)
                out.append((ex['image'], ex['label']))
        except tf.errors.OutOfRangeError:
            return out


def test_evaluate_writes_reports_that_match_an_independent_count(trained_run, demo_records,
                                                                  tmp_path):
    out = str(tmp_path / 'eval')
    code, log = run_job('evaluate.py', '--run_dir', trained_run, '--dataset', demo_records[1],
                        '--output_dir', out, '--crf')
    assert code == 0, log
    metrics = json.load(open(os.path.join(out, 'metrics.json')))
    for key in ('mean_iou', 'pixel_accuracy', 'mean_accuracy', 'fw_iou', 'per_class_iou'):
        assert key in metrics
    assert metrics['num_images'] == 3 and 'crf' in metrics
    # The same numbers from the checkpoint through Predictor and numpy.
    predictor = Predictor.from_run(trained_run)
    n = predictor.config.num_classes
    hist = sum(confusion_matrix(label, predictor.predict(image).argmax(-1), n)
               for image, label in records(demo_records[1]))
    assert np.isclose(metrics['mean_iou'], scores(hist)['mean_iou'])
    with open(os.path.join(out, 'confusion.csv')) as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == ['sky', 'building', 'road', 'car']
    np.testing.assert_array_equal(np.array([r[1:] for r in rows[1:]], int), hist)
    assert len(list(csv.DictReader(open(os.path.join(out, 'per_image.csv'))))) == 3
    assert '| **mean** |' in open(os.path.join(out, 'per_class.md')).read()
    assert os.path.getsize(os.path.join(out, 'confusion.png')) > 1000
    for kind in ('img', 'annotation', 'prediction', 'prediction_crfed', 'overlay'):
        assert os.path.exists(os.path.join(out, 'images', 'val_0000_%s.jpg' % kind))


def test_evaluate_multiscale_worst_and_crf_search(trained_run, demo_records, tmp_path):
    out = str(tmp_path / 'eval')
    code, log = run_job('evaluate.py', '--run_dir', trained_run, '--dataset', demo_records[1],
                        '--output_dir', out, '--scales', '0.75,1', '--flip', '--draw', 'worst',
                        '--num_draw', '1', '--no-crf', '--gallery', '0')  # config: crf true
    assert code == 0, log
    assert len(os.listdir(os.path.join(out, 'images'))) == 4  # one image, no CRF picture
    code, log = run_job('evaluate.py', '--run_dir', trained_run, '--dataset', demo_records[1],
                        '--output_dir', out, '--crf_search', '2', '--crf_bilateral_compat', '3,5',
                        '--crf_bilateral_sxy', '30', '--crf_bilateral_srgb', '5',
                        '--crf_gaussian_compat', '0,3')
    assert code == 0, log
    search = json.load(open(os.path.join(out, 'crf_search.json')))
    assert len(search['results']) == 4 and 'best' in search and 'gain' in search
    assert '| crf_bilateral_compat |' in log and '| no CRF |' in log
    search_path = os.path.join(out, 'crf_search.json')
    code, log = run_job('evaluate.py', '--run_dir', trained_run, '--dataset', demo_records[1],
                        '--output_dir', str(tmp_path / 'tuned'), '--crf_from', search_path,
                        '--draw', 'none')
    assert code == 0 and 'with CRF: mIoU' in log, log
    code, log = run_job('evaluate.py', '--run_dir', trained_run, '--dataset', demo_records[1],
                        '--output_dir', str(tmp_path / 'tuned2'), '--crf_from', search_path,
                        '--no-crf')
    assert code == 1 and 'contradict' in log and 'Traceback' not in log, log
    code, log = run_job('predict.py', '--run_dir', trained_run, '--input', search_path,
                        '--output_dir', str(tmp_path / 'p'), '--crf_from', demo_records[1])
    assert code == 1 and 'not a crf_search.json' in log and 'Traceback' not in log, log
    # the pool's results equal the serial CRF's
    from utils.evaluation.crf_search import collect_probabilities, crf_search
    config, checkpoint = load_run(trained_run)
    samples = collect_probabilities(config, checkpoint, demo_records[1], 2)
    params = dict(config.crf_params(), crf_iterations=2)
    grid = {'crf_bilateral_compat': (5,), 'crf_bilateral_sxy': (30,), 'crf_bilateral_srgb': (5,)}
    serial = crf_search(samples, 4, params, grid)
    with CrfPool(2) as pool:
        pooled = crf_search(samples, 4, params, grid, pool)
    assert serial == pooled
    assert serial['best']['crf_gaussian_compat'] == config.crf_gaussian_compat


def test_predict_keeps_odd_input_sizes(trained_run, tmp_path):
    inputs = tmp_path / 'in'
    os.makedirs(inputs)
    rng = np.random.RandomState(0)
    cv2.imwrite(str(inputs / 'odd.png'), rng.randint(0, 256, (37, 53, 3), np.uint8))
    cv2.imwrite(str(inputs / 'wide.jpg'), rng.randint(0, 256, (33, 101, 3), np.uint8))
    cv2.imwrite(str(inputs / 'grey.bmp'), rng.randint(0, 256, (40, 41), np.uint8))
    out = str(tmp_path / 'out')
    code, log = run_job('predict.py', '--run_dir', trained_run, '--input', str(inputs),
                        '--output_dir', out, '--crf')
    assert code == 0, log
    for name, shape in (('odd', (37, 53)), ('wide', (33, 101)), ('grey', (40, 41))):
        label = cv2.imread(os.path.join(out, name + '_label.png'), cv2.IMREAD_UNCHANGED)
        assert label.shape == shape and label.max() < 4
        assert cv2.imread(os.path.join(out, name + '_color.png')).shape[:2] == shape
        assert cv2.imread(os.path.join(out, name + '_overlay.jpg')).shape[:2] == shape
    code, log = run_job('predict.py', '--run_dir', str(tmp_path), '--input', str(inputs),
                        '--output_dir', out)
    assert code == 1 and 'config.yaml' in log and 'Traceback' not in log


def test_export_parity_with_the_checkpoint(trained_run, demo_records, tmp_path, capfd):
    config, checkpoint = load_run(trained_run)
    images = [image for image, _ in records(demo_records[1])]
    images.append(np.random.RandomState(1).randint(0, 256, (45, 67, 3), np.uint8))
    code, log = run_job('export_model.py', '--run_dir', trained_run, '--export_dir',
                        str(tmp_path / 'e2'), '--parity_images', str(tmp_path / 'none*.png'))
    assert code == 1
    cv2.imwrite(str(tmp_path / 'p.png'), images[0][..., ::-1])
    export_dir = str(tmp_path / 'e3')
    code, log = run_job('export_model.py', '--run_dir', trained_run, '--export_dir',
                        export_dir, '--parity_images', str(tmp_path / 'p.png'),
                        '--benchmark_size', '64,80', '--formats',
                        'saved_model,frozen_graph,onnx,tflite,tflite_int8', '--input_size',
                        '64,80', '--calibration_record', demo_records[0], '--validation_record',
                        demo_records[1])
    assert code == 0 and 'frozen_graph parity on 1 images: 0 pixels differ' in log, log
    # The converter's and LiteRT's C++ lines (written to file descriptor 2) stay off the console.
    console = capfd.readouterr().err
    assert 'fully_quantize' not in console and 'XNNPACK' not in console, console[-2000:]
    assert 'onnx parity on 1 images: 0 pixels differ' in log
    assert 'tflite parity on 1 images:' in log and 'tflite latency at 64x80' in log
    report = json.load(open(str(tmp_path / 'e3' / 'export_report.json')))
    assert [row['format'] for row in report['formats']] == ['saved_model', 'frozen_graph',
                                                           'onnx', 'tflite', 'tflite_int8']
    int8 = report['formats'][-1]
    assert 0 <= int8['mean_iou'] <= 1 and 'tflite_int8 mIoU' in log
    assert int8['bytes'] < report['formats'][-2]['bytes'] / 2  # int8 weights
    assert all(row['bytes'] > 0 and row['latency_ms'] > 0 for row in report['formats'])
    assert '| tflite |' in log and 'images/s needed' in log
    fastest = max((row for row in report['formats'] if (
        row['checkpoint_mean_iou'] - row['mean_iou'] <= 0.01 if row['format'] == 'tflite_int8'
        else row['differing_fraction'] <= 0.001)), key=lambda row: row['images_per_second'])
    assert report['recommended']['format'] == fastest['format'] and report['machine']
    assert 'Deploy on this machine (%s): %s' % (report['machine'], fastest['format']) in log
    assert 'saved_model parity on 1 images: 0 pixels differ' in log and 'ms per image' in log
    # The SavedModel and the frozen graph take any size, and give the checkpoint's classes.
    predictor = Predictor(config, checkpoint)
    for model in (ExportedModel(export_dir), FrozenModel(os.path.join(export_dir,
                                                                      FROZEN_GRAPH_FILENAME))):
        assert parity_check(predictor, model, images) == [0] * len(images)
        classes, probabilities = model(images[-1][None])
        assert classes.shape == (1, 45, 67) and probabilities.shape == (1, 45, 67, 4)
        np.testing.assert_allclose(probabilities.sum(-1), 1, atol=1e-5)
    code, log = run_job('export_model.py', '--run_dir', trained_run, '--export_dir', export_dir)
    assert code == 1 and 'exists' in log
    code, log = run_job('export_model.py', '--run_dir', trained_run, '--export_dir',
                        str(tmp_path / 'e5'), '--formats', 'tflite')
    assert code == 1 and 'give --input_size' in log and not os.path.exists(tmp_path / 'e5')
    code, log = run_job('export_model.py', '--run_dir', trained_run, '--export_dir',
                        str(tmp_path / 'e6'), '--formats', 'tflite_int8', '--input_size', '64,80')
    assert code == 1 and 'give --calibration_record' in log
    code, log = run_job('export_model.py', '--run_dir', trained_run, '--export_dir',
                        str(tmp_path / 'e4'), '--formats', 'tensorrt')
    assert code == 1 and '--formats: unknown tensorrt' in log


def test_the_recommended_format_is_the_fastest_vouched_for():
    from utils.deploy.export import recommend_format
    rows = [{'format': 'saved_model', 'images_per_second': 50.0, 'differing_fraction': 0.0},
            {'format': 'onnx', 'images_per_second': 80.0, 'differing_fraction': 0.0},
            {'format': 'tflite', 'images_per_second': 90.0, 'differing_fraction': 0.01},
            {'format': 'tflite_int8', 'images_per_second': 120.0}]
    choice = recommend_format(rows)
    assert choice['format'] == 'onnx' and choice['images_per_second'] == 80.0
    assert 'tflite (disagrees with the checkpoint)' in choice['why']
    assert 'give --validation_record' in choice['why']
    rows[-1].update(mean_iou=0.785, checkpoint_mean_iou=0.79)  # half a point lost: deployable
    assert recommend_format(rows)['format'] == 'tflite_int8'
    rows[-1].update(mean_iou=0.70)
    choice = recommend_format(rows)
    assert choice['format'] == 'onnx' and 'mIoU 9.00 points below' in choice['why']
    assert recommend_format([{'format': 'onnx'}]) == {
        'format': None, 'images_per_second': None,
        'why': 'no format was timed (give --benchmark_size)'}


def test_predict_from_an_exported_model_matches_the_run(trained_run, demo_records, tmp_path):
    config, checkpoint = load_run(trained_run)
    export_dir = str(tmp_path / 'exported')
    export_model(config, checkpoint, export_dir,
                 ('saved_model', 'frozen_graph', 'onnx', 'tflite'), input_size=(50, 70))
    image = np.random.RandomState(2).randint(0, 256, (50, 70, 3), np.uint8)
    cv2.imwrite(str(tmp_path / 'in.png'), image[..., ::-1])
    labels = {}
    for name, source in (('run', ['--run_dir', trained_run]),
                         ('saved', ['--exported', export_dir]),
                         ('frozen', ['--exported', os.path.join(export_dir,
                                                                FROZEN_GRAPH_FILENAME)]),
                         ('onnx', ['--exported', os.path.join(export_dir, 'model.onnx')]),
                         ('tflite', ['--exported', os.path.join(export_dir, 'model.tflite')])):
        out = str(tmp_path / name)
        code, log = run_job('predict.py', *source, '--input', str(tmp_path / 'in.png'),
                            '--output_dir', out)
        assert code == 0, log
        labels[name] = cv2.imread(os.path.join(out, 'in_label.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(labels['saved'], labels['run'])
    np.testing.assert_array_equal(labels['frozen'], labels['run'])
    np.testing.assert_array_equal(labels['onnx'], labels['run'])
    assert (labels['tflite'] != labels['run']).mean() <= 0.001  # float rounding of XNNPACK
    code, log = run_job('predict.py', '--exported', export_dir, '--flip', '--input',
                        str(tmp_path / 'in.png'), '--output_dir', str(tmp_path / 'x'))
    assert code == 1 and 'apply to --run_dir' in log


def test_predict_a_video_frame_by_frame(trained_run, tmp_path):
    clip = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*'mp4v'), 5.0, (80, 64))
    rng = np.random.RandomState(3)
    for _ in range(12):
        writer.write(rng.randint(0, 256, (64, 80, 3), np.uint8))
    writer.release()
    out = str(tmp_path / 'out')
    code, log = run_job('predict.py', '--run_dir', trained_run, '--input', clip, '--output_dir',
                        out, '--batch_size', '5', '--save_class_maps')
    assert code == 0 and 'Predicted 12 frames' in log, log
    video = cv2.VideoCapture(os.path.join(out, 'clip_overlay.mp4'))
    assert video.get(cv2.CAP_PROP_FPS) == 5.0
    frames = 0
    while True:
        ok, frame = video.read()
        if not ok:
            break
        assert frame.shape == (64, 80, 3)
        frames += 1
    assert frames == 12
    assert len(os.listdir(os.path.join(out, 'clip_frames'))) == 12
    assert not [n for n in os.listdir(out) if n.endswith('.tmp') or n.endswith('.mp4.mp4')]
    code, log = run_job('predict.py', '--run_dir', trained_run, '--input',
                        str(tmp_path / 'missing.mp4'), '--output_dir', out)
    assert code == 1 and 'cannot open video' in log and 'Traceback' not in log


def test_each_crf_setting_has_one_name_and_a_checked_range(trained_run, demo_records, tmp_path):
    """crf_bilateral_sxy is the config key, dense_crf's argument, the search JSON's field and
    the flag; searches written with the earlier short names still load."""
    import dataclasses
    import inspect
    from utils.config import CRF_KEYS
    from utils.crf import dense_crf
    from utils.errors import ConfigError
    from utils.evaluation.crf_search import searched_crf_settings
    config, _ = load_run(trained_run)
    assert list(config.crf_params()) == list(CRF_KEYS)
    assert list(inspect.signature(dense_crf).parameters)[2:] == list(CRF_KEYS)
    for key, value in (('crf_bilateral_sxy', 0), ('crf_gaussian_compat', -1),
                       ('crf_iterations', 0), ('overlay_alpha', 2)):
        with pytest.raises(ConfigError, match=key):
            dataclasses.replace(config, **{key: value})  # replace() validates too
    old = tmp_path / 'old_search.json'
    old.write_text(json.dumps({'best': {'compat': 3, 'sxy': 90, 'srgb': 3,
                                        'gaussian_compat': 1, 'mean_iou': 0.5}}))
    assert searched_crf_settings(str(old)) == {
        'crf_bilateral_compat': 3.0, 'crf_bilateral_sxy': 90.0, 'crf_bilateral_srgb': 3.0,
        'crf_gaussian_compat': 1.0}
    code, log = run_job('evaluate.py', '--run_dir', trained_run, '--dataset', demo_records[1],
                        '--output_dir', str(tmp_path / 'e'), '--crf_bilateral_sxy', '30,60')
    assert code == 2 and 'several values are a grid for --crf_search' in log, log
    code, log = run_job('evaluate.py', '--run_dir', trained_run, '--dataset', demo_records[1],
                        '--output_dir', str(tmp_path / 'e'), '--crf_bilateral_sxy', '0',
                        '--draw', 'none')
    assert code == 1 and 'crf_bilateral_sxy (a kernel width) must be > 0' in log, log
    code, log = run_job('evaluate.py', '--run_dir', trained_run, '--dataset', demo_records[1],
                        '--output_dir', str(tmp_path / 'e'), '--crf_search', '2',
                        '--crf_bilateral_sxy', '0,30')
    assert code == 1 and 'crf_bilateral_sxy (a kernel width) must be > 0' in log, log
    code, log = run_job('evaluate.py', '--run_dir', trained_run, '--dataset', demo_records[1],
                        '--output_dir', str(tmp_path / 'e'), '--crf_bilateral_sxy', '50',
                        '--no-crf')
    assert code == 1 and 'contradict' in log, log
    code, log = run_job('evaluate.py', '--run_dir', trained_run, '--dataset', demo_records[1],
                        '--output_dir', str(tmp_path / 'e'), '--positive_class', 'bus')
    assert code == 1 and 'error: --positive_class bus is no class' in log, log
    assert 'Traceback' not in log
