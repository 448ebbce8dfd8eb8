"""Issue 32's hostile cases: each fed as a user would, with the outcome checked (one line
naming the file, flag or value; nothing written before touched)."""
import json
import os

import pytest
import tensorflow.compat.v1 as tf

from tests.conftest import DEMO_NUM_CLASSES, run_script, tiny_config, train_demo_run
from utils.data.conversion import convert_pairs, make_label_spec
from utils.data.demo import write_demo_dataset
from utils.data.layouts import camvid_pairs
from utils.errors import ConfigError
from utils.rundir import RunDir
from utils.training.trainer import train


def test_a_lock_linked_to_a_file_elsewhere_is_neither_read_nor_written(demo_records, tmp_path):
    outside = tmp_path / 'secret.txt'
    outside.write_text('do not print or overwrite me')
    out = tmp_path / 'run'
    out.mkdir()
    os.symlink(str(outside), str(out / '.lock'))
    code, log = run_script('train.py', '--config', 'configs/demo.yaml', '--dataset_train',
                           demo_records[0], '--output_dir', str(out), '--max_steps', '1')
    assert code == 1 and 'is a symbolic link' in log and 'remove the link' in log, log
    assert 'do not print' not in log
    assert outside.read_text() == 'do not print or overwrite me'


def test_run_files_that_are_links_are_refused(demo_records, tmp_path):
    out = str(tmp_path / 'run')
    train_demo_run(demo_records[0], out, 2)
    history = os.path.join(out, 'train', 'history.jsonl')
    outside = tmp_path / 'elsewhere.jsonl'
    outside.write_text('{"step": 1}\n')
    os.remove(history)
    os.symlink(str(outside), history)
    with pytest.raises(ConfigError, match='is a symbolic link'), tf.Graph().as_default():
        train(tiny_config(dataset_train=demo_records[0], output_dir=out, model='fcn8s',
                          fc_depth=16, crop_size='64,64', batch_size=2, max_steps=3),
              log=lambda *_: None)
    assert outside.read_text() == '{"step": 1}\n'


@pytest.mark.parametrize('content, expected', [
    ('{"mean_iou": 0.5, "step": 2, "checkp', 'is damaged'),
    ('{"mean_iou": 0.5, "step": 2, "checkpoint": "../../elsewhere/model.ckpt-2"}', None),
    ('{"mean_iou": 0.5, "step": 2, "checkpoint": "/abs/old/best/model.ckpt-2"}', None),
    ('{"mean_iou": 0.5, "step": 2, "checkpoint": "best/model.ckpt-2"}', None),
])
def test_best_json_is_read_only_inside_the_run(content, expected, tmp_path):
    run = RunDir(str(tmp_path / 'run'))
    os.makedirs(run.eval_dir)
    with open(run.best_path, 'w') as f:
        f.write(content)
    if expected:
        with pytest.raises(ConfigError, match=expected):
            run.read_best()
    else:
        assert run.read_best()['checkpoint'] == os.path.join(run.best_dir, 'model.ckpt-2')


@pytest.mark.parametrize('flag, value, named', [
    ('--learning_rate', 'nan', 'learning_rate must be a positive finite rate'),
    ('--learning_rate', 'inf', 'learning_rate must be a positive finite rate'),
    ('--momentum', 'nan', 'momentum must be in [0, 1)'),
    ('--weight_decay', '-5', 'weight_decay must be >= 0'),
    ('--class_weights', '1,-1,1,1', 'class_weights must be finite and >= 0'),
])
def test_nonsense_numbers_are_one_line_before_any_work(flag, value, named, tmp_path):
    out = tmp_path / 'run'
    code, log = run_script('train.py', '--config', 'configs/demo.yaml', '--dataset_train',
                           'nowhere.record', '--output_dir', str(out), flag, value)
    assert code == 1 and named in log and 'Traceback' not in log, log
    assert not out.exists()


@pytest.fixture(scope='module')
def void_records(tmp_path_factory):
    """Demo images whose labels all become void (a label map that matches none of them)."""
    root = tmp_path_factory.mktemp('void')
    data_dir = write_demo_dataset(str(root / 'data'), num_train=4, num_val=2, height=64,
                                  width=80, seed=2)
    path = str(root / 'void.record')
    convert_pairs(camvid_pairs(data_dir, 'train'), path,
                  make_label_spec(DEMO_NUM_CLASSES, label_map={200: 0}, label_map_default=255),
                  log=lambda *_: None)
    return path


def test_all_void_labels_are_one_line_in_training_and_evaluation(void_records, trained_run,
                                                                 tmp_path):
    code, log = run_script('train.py', '--config', 'configs/demo.yaml', '--dataset_train',
                           void_records, '--output_dir', str(tmp_path / 'run'),
                           '--max_steps', '1')
    assert code == 1 and 'has no labelled pixel' in log and 'label_map_default' in log, log
    os.remove(void_records + '.report.json')  # records without their report: scoring says it
    code, log = run_script('evaluate.py', '--run_dir', trained_run, '--dataset', void_records,
                           '--output_dir', str(tmp_path / 'eval'))
    assert code == 1 and 'has no labelled pixel' in log and 'nan' not in log, log


def test_predictions_never_go_into_an_input_folder(trained_run, tmp_path):
    folder = tmp_path / 'photos'
    folder.mkdir()
    image = write_demo_dataset(str(tmp_path / 'demo'), num_train=1, num_val=1, height=64,
                               width=80, seed=3)
    source = camvid_pairs(image, 'train')[0][0]
    with open(source, 'rb') as f:
        (folder / 'x.png').write_bytes(f.read())
    (folder / 'x_label.png').write_bytes(b'the user\'s own file')
    code, log = run_script('predict.py', '--run_dir', trained_run, '--input', str(folder),
                           '--output_dir', str(folder))
    assert code == 1 and 'is the folder of the input' in log, log
    assert (folder / 'x_label.png').read_bytes() == b'the user\'s own file'
    assert sorted(os.listdir(folder)) == ['x.png', 'x_label.png']


@pytest.mark.parametrize('flag', ['--input_size', '--benchmark_size'])
def test_export_sizes_beyond_the_pixel_limit_are_refused_before_any_work(flag, trained_run,
                                                                         tmp_path):
    code, log = run_script('export_model.py', '--run_dir', trained_run, '--export_dir',
                           str(tmp_path / 'export'), '--formats', 'tflite', flag,
                           '100000,100000')
    assert code == 2 and 'above the pixel limit' in log, log
    assert not (tmp_path / 'export').exists()
    assert not [p for p in os.listdir(tmp_path) if 'tmp' in p]


def test_history_of_steps_is_kept_once(tmp_path):
    """(A sanity check of the JSON-lines helpers that now refuse links.)"""
    from utils.training.monitoring import append_jsonl, read_jsonl
    path = str(tmp_path / 'h.jsonl')
    append_jsonl(path, {'step': 1})
    append_jsonl(path, {'step': 2})
    assert read_jsonl(path) == [{'step': 1}, {'step': 2}]
    assert json.loads(open(path).read().splitlines()[1]) == {'step': 2}


def test_a_job_run_without_the_virtualenv_says_how_to_activate_it():
    import subprocess
    import sys
    from tests.conftest import ROOT
    # -S: no site-packages, as a system Python without the project's packages
    done = subprocess.run([sys.executable, '-S', os.path.join(ROOT, 'train.py'), '--help'],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and 'tensorflow is not installed' in lines[0], done.stderr
    assert 'bin/activate' in lines[0]


def test_two_records_of_one_file_name_are_drawn_and_scored_apart(trained_run, tmp_path):
    import csv
    import re
    pairs = []
    for seed in (4, 5):  # the demo's file names are the same for every seed
        data = write_demo_dataset(str(tmp_path / ('d%d' % seed)), num_train=1, num_val=1,
                                  height=64, width=80, seed=seed)
        pairs += camvid_pairs(data, 'val')
    assert os.path.basename(pairs[0][0]) == os.path.basename(pairs[1][0])
    record = str(tmp_path / 'same_names.record')
    convert_pairs(pairs, record, make_label_spec(DEMO_NUM_CLASSES), log=lambda *_: None)
    out = tmp_path / 'eval'
    code, log = run_script('evaluate.py', '--run_dir', trained_run, '--dataset', record,
                           '--output_dir', str(out), '--gallery', '1')
    assert code == 0, log
    rows = list(csv.DictReader(open(out / 'per_image.csv')))
    assert [r['record'] for r in rows] == ['0', '1']
    page = (out / 'report.html').read_text()
    shown = re.findall(r'<div class="t">[^<]* \(record (\d)\): mIoU ([-0-9.]+)', page)
    images = re.findall(r'<img src="(images/[^"]*_img\.jpg)"', page)
    assert len(shown) == 2 and len(set(images)) == 2, (shown, images)
    for record, miou in shown:  # each entry shows its own record's score
        assert miou == '%.1f' % (100 * float(rows[int(record)]['mean_iou']))


def test_a_class_name_with_dollars_is_drawn_literally(tmp_path):
    from utils.evaluation.reports import write_confusion_png
    path = str(tmp_path / 'confusion.png')
    write_confusion_png(path, [[5, 1], [0, 3]], ['$x^$ road', r'$\foo$'])  # bad TeX for mathtext
    assert os.path.getsize(path) > 1000
