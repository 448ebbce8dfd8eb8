"""No number from damaged data, no run that reads another run's files, paths that mean what
they say, and training starts and restarts that leave nothing wrong behind."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import evaluate
from tests.conftest import DEMO_NUM_CLASSES, ROOT, run_script, tiny_config
from utils.data.records import make_example, resolve_record_paths, scan_records
from utils.errors import CheckpointError, DataError, error_reason
from utils.rundir import LOCK_FILENAME, RunDir, load_run
from utils.training.monitoring import keep_steps_up_to, read_jsonl
from utils.training.trainer import train

DEMO = os.path.join(ROOT, 'configs', 'demo_fcn8s.yaml')


def records_of(path):
    return list(tf.io.tf_record_iterator(path))


def write_records(path, records):
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


def run_evaluate(capsys, run_dir, dataset, out, *extra):
    code = evaluate.main(['--run_dir', run_dir, '--dataset', dataset, '--output_dir', out,
                          '--draw', 'none', '--no-crf'] + list(extra))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# 1. Evaluation reads data the way training does.
def test_evaluation_of_a_cut_record_file_says_how_much_it_scored(trained_run, demo_records,
                                                                  tmp_path, capsys):
    data = open(demo_records[0], 'rb').read()  # 12 records
    cut = str(tmp_path / 'cut.record')
    open(cut, 'wb').write(data[:len(data) // 2])
    readable = scan_records([cut])[0]
    assert readable.damage and 0 < readable.count < 12
    out = str(tmp_path / 'eval')
    code, log = run_evaluate(capsys, trained_run, cut, out)
    assert code == 0, log
    assert ('%s is damaged after record %d' % (cut, readable.count)) in log
    assert ('warning: %s is damaged: only its first %d record(s) are readable, the rest was '
            'not scored' % (cut, readable.count)) in log
    metrics = json.load(open(os.path.join(out, 'metrics.json')))
    assert metrics['num_images'] == readable.count
    assert metrics['data']['damaged_files'][0]['path'] == cut
    assert metrics['data']['damaged_files'][0]['readable_records'] == readable.count


def test_evaluation_of_random_bytes_is_one_line_and_writes_no_metrics(trained_run, tmp_path,
                                                                      capsys):
    noise = str(tmp_path / 'noise.record')
    open(noise, 'wb').write(np.random.RandomState(0).bytes(5000))
    out = str(tmp_path / 'eval')
    code, log = run_evaluate(capsys, trained_run, noise, out)
    assert code == 1 and 'Traceback' not in log
    error = [line for line in log.splitlines() if line.startswith('error:')]
    assert len(error) == 1 and noise in error[0] and 'convert' in error[0]
    assert not os.path.exists(os.path.join(out, 'metrics.json'))


def test_a_file_with_no_readable_record_among_good_ones_is_an_error(demo_records, tmp_path):
    from utils.data.pipeline import check_dataset
    noise = str(tmp_path / 'noise.record')
    open(noise, 'wb').write(b'\x00' * 64)
    with pytest.raises(DataError, match='%s holds no readable record' % noise):
        check_dataset('%s,%s' % (demo_records[1], noise), DEMO_NUM_CLASSES, log=lambda *_: None)


def test_a_record_of_another_schema_in_the_middle_is_one_line(trained_run, demo_records,
                                                              tmp_path, capsys):
    good = records_of(demo_records[1])
    other = tf.train.Example(features=tf.train.Features(feature={'x': tf.train.Feature(
        int64_list=tf.train.Int64List(value=[1]))})).SerializeToString()
    mixed = write_records(str(tmp_path / 'mixed.record'), good[:2] + [other] + good[2:])
    code, log = run_evaluate(capsys, trained_run, mixed, str(tmp_path / 'eval'))
    assert code == 1 and 'Traceback' not in log
    assert 'error: records of %s (record 2) lack image/height' % mixed in log, log


def test_evaluation_skips_and_names_images_over_the_pixel_limit(trained_run, demo_records,
                                                               tmp_path, capsys):
    out = str(tmp_path / 'eval')
    code, log = run_evaluate(capsys, trained_run, demo_records[1], out,
                             '--max_image_pixels', '100')
    assert code == 1 and 'no image of %s could be scored' % demo_records[1] in log
    assert 'above the limit of 100 (--max_image_pixels)' in log
    code, log = run_evaluate(capsys, trained_run, demo_records[1], out,
                             '--max_image_pixels', '0')
    assert code == 0, log
    metrics = json.load(open(os.path.join(out, 'metrics.json')))
    assert metrics['num_images'] == 3 and metrics['data']['skipped_records'] == []
    assert metrics['data']['record_files'] == [demo_records[1]]


# 2. Runs are relocatable.
def copy_run(source, target, checkpoints=True):
    """A copy of a run; checkpoint files are hard links (fast, no disk), which a test must
    replace, never modify in place."""
    shutil.copytree(source, target, copy_function=os.link if checkpoints else shutil.copy2,
                    ignore=None if checkpoints else shutil.ignore_patterns('model.ckpt-*'))
    return target


@pytest.fixture(scope='module')
def validated_run(demo_records, tmp_path_factory):
    """A tiny run with a best checkpoint (validated at its steps) and absolute-free files."""
    out = str(tmp_path_factory.mktemp('validated') / 'run')
    with tf.Graph().as_default():
        train(tiny_config(dataset_train=demo_records[0], dataset_val=demo_records[1],
                          output_dir=out, max_steps=2, save_every=1, eval_every=1,
                          keep_checkpoints=2), log=lambda *_: None)
    return out


def test_a_run_stores_its_own_files_relative_to_itself(validated_run):
    run = RunDir(validated_run)
    for state in (os.path.join(run.train_dir, 'checkpoint'),
                  os.path.join(run.best_dir, 'checkpoint')):
        text = open(state).read()
        assert validated_run not in text and 'model.ckpt-' in text, text
    stored = json.load(open(run.best_path))['checkpoint']
    assert not os.path.isabs(stored) and stored.startswith('best/model.ckpt-')


def test_a_copied_run_reads_its_own_checkpoints_never_the_originals(validated_run, tmp_path):
    copy = copy_run(validated_run, str(tmp_path / 'copy'))
    config, checkpoint = load_run(copy, log=lambda *_: None)
    assert checkpoint.startswith(os.path.join(copy, 'best', 'model.ckpt-'))
    assert config.output_dir == copy
    assert load_run(copy, latest=True, log=lambda *_: None)[1] == os.path.join(
        copy, 'train', 'model.ckpt-2')
    # The copy's own best checkpoint damaged: evaluating it fails on the copy's file.
    index = checkpoint + '.index'
    os.remove(index)  # a hard link: replace, never modify in place
    shutil.copyfile(os.path.join(validated_run, os.path.relpath(index, copy)), index)
    data = checkpoint + '.data-00000-of-00001'
    content = open(data, 'rb').read()
    os.remove(data)
    open(data, 'wb').write(content[:len(content) // 3])
    from utils.inference.predictor import Predictor
    with pytest.raises(CheckpointError) as error:
        Predictor.from_run(copy, log=lambda *_: None)
    assert copy in str(error.value)
    Predictor.from_run(validated_run, log=lambda *_: None).close()  # the original is intact


def test_a_run_written_with_absolute_paths_and_moved_still_loads(validated_run, tmp_path):
    """Runs written before paths were relative: absolute paths in best.json and the state
    files, naming where the run was written."""
    old_place = '/somewhere/else/run'
    moved = copy_run(validated_run, str(tmp_path / 'moved'))
    run = RunDir(moved)
    best = json.load(open(run.best_path))
    best['checkpoint'] = os.path.join(old_place, best['checkpoint'])
    open(run.best_path, 'w').write(json.dumps(best))
    for directory in (run.train_dir, run.best_dir):
        state = tf.train.get_checkpoint_state(directory)
        tf.train.update_checkpoint_state(
            directory, os.path.join(old_place, 'x', os.path.basename(
                state.model_checkpoint_path)))
    checkpoint = load_run(moved, log=lambda *_: None)[1]
    assert checkpoint == os.path.join(moved, best['checkpoint'][len(old_place) + 1:])
    assert load_run(moved, latest=True, log=lambda *_: None)[1] == os.path.join(
        moved, 'train', 'model.ckpt-2')
    # Resuming the moved run continues from its own newest checkpoint.
    messages = []
    with tf.Graph().as_default():
        summary = train(tiny_config(dataset_train=load_run(moved, log=len)[0].dataset_train,
                                    output_dir=moved, max_steps=3, save_every=1,
                                    keep_checkpoints=2), log=messages.append)
    assert summary['step'] == 3
    assert any(m.startswith('Resumed from %s/train/model.ckpt-2' % moved) for m in messages)


# 3. Paths mean what they say.
def test_an_existing_file_is_taken_literally_before_any_glob(demo_records, tmp_path):
    literal = str(tmp_path / 'cam[1].record')
    other = str(tmp_path / 'cam1.record')
    shutil.copyfile(demo_records[1], literal)
    shutil.copyfile(demo_records[0], other)
    messages = []
    assert resolve_record_paths(literal, messages.append) == [literal]
    assert messages == []
    with_comma = str(tmp_path / 'a,b.record')
    shutil.copyfile(demo_records[1], with_comma)
    assert resolve_record_paths(with_comma) == [with_comma]
    assert resolve_record_paths('%s,%s' % (other, literal)) == [other, literal]
    assert resolve_record_paths(str(tmp_path / 'cam?.record'), messages.append) == [other]
    assert messages == ['%s matched 1 file(s): %s' % (tmp_path / 'cam?.record', other)]
    with pytest.raises(FileNotFoundError, match='separated by commas'):
        resolve_record_paths(str(tmp_path / 'x,y.record'))


# 4. Training starts and restarts.
def test_a_failed_first_start_blocks_nothing_and_leaves_no_lock(demo_records, tmp_path):
    out = str(tmp_path / 'run')
    with pytest.raises(CheckpointError):
        train(tiny_config(dataset_train=demo_records[0], output_dir=out, max_steps=1,
                          model='fcn8s', checkpoint_path=str(tmp_path / 'missing.ckpt')),
              log=lambda *_: None)
    assert not os.path.exists(os.path.join(out, LOCK_FILENAME))
    with tf.Graph().as_default():  # the corrected rerun, another network
        summary = train(tiny_config(dataset_train=demo_records[0], output_dir=out,
                                    max_steps=1), log=lambda *_: None)
    assert summary['step'] == 1
    assert not os.path.exists(os.path.join(out, LOCK_FILENAME))


def test_history_holds_each_step_once_after_a_resume(tmp_path):
    path = str(tmp_path / 'history.jsonl')
    open(path, 'w').write(''.join(json.dumps({'step': s, 'loss': 1.0}) + '\n'
                                  for s in (1, 2, 3, 4)) + '{"step": 5, "lo')  # torn by a kill
    assert keep_steps_up_to(path, 2) == 2
    assert [r['step'] for r in read_jsonl(path)] == [1, 2]
    assert open(path).read().endswith('\n')
    assert keep_steps_up_to(path, 2) == 0


def test_a_resumed_run_logs_each_step_once(demo_records, tmp_path):
    out = str(tmp_path / 'run')
    train(tiny_config(dataset_train=demo_records[0], output_dir=out, max_steps=2,
                      save_every=2), log=lambda *_: None)
    history = RunDir(out).history_path
    with open(history, 'a') as f:  # steps a killed job logged after its last checkpoint
        f.write(json.dumps({'step': 3, 'loss': 9.0}) + '\n')
    with tf.Graph().as_default():
        train(tiny_config(dataset_train=demo_records[0], output_dir=out, max_steps=4,
                          save_every=2), log=lambda *_: None)
    steps = [r['step'] for r in read_jsonl(history)]
    assert steps == [1, 2, 3, 4] and 9.0 not in [r['loss'] for r in read_jsonl(history)]


def test_a_non_finite_loss_says_truthfully_whether_a_checkpoint_exists(demo_records, tmp_path):
    from utils.errors import TrainingError
    out = str(tmp_path / 'run')
    # A rate near float32's largest (nan itself is refused by the config): Adam's first update
    # moves every weight by about that much, and the next loss overflows.
    with pytest.raises(TrainingError, match=r'loss became (nan|inf) at step 2; stopped without '
                       r'saving: no checkpoint of this run was saved yet \(save_every 100\)'):
        train(tiny_config(dataset_train=demo_records[0], output_dir=out, max_steps=3,
                          learning_rate='1e38'), log=lambda *_: None)
    with tf.Graph().as_default():
        train(tiny_config(dataset_train=demo_records[0], output_dir=out, max_steps=1),
              log=lambda *_: None)
    with tf.Graph().as_default(), pytest.raises(
            TrainingError, match='loss became (nan|inf) at step 3; stopped without saving: the '
            'last good checkpoint is %s' % os.path.join(out, 'train', 'model.ckpt-1')):
        train(tiny_config(dataset_train=demo_records[0], output_dir=out, max_steps=4,
                          learning_rate='1e38'), log=lambda *_: None)


def test_output_dir_that_is_a_file_is_one_line(demo_records, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    code, log = run_script('train.py', '--config', DEMO, '--dataset_train', demo_records[0],
                           '--output_dir', str(blocker), '--max_steps', '1')
    assert code == 1 and 'Traceback' not in log
    assert 'cannot write %s' % blocker in log and 'in the way' in log, log


def test_error_reason_finds_the_line_that_says_what_went_wrong():
    message = ("Graph execution error:\n\nDetected at node 'save/RestoreV2' defined at (most "
               "recent call last):\n    File \"t.py\", line 4, in <module>\nNode: "
               "'save/RestoreV2'\nRead less bytes than requested\n\t [[{{node save/RestoreV2}}]]"
               "\n\nOriginal stack trace for 'save/RestoreV2':\n")
    assert error_reason(tf.errors.OutOfRangeError(None, None, message)) == (
        'Read less bytes than requested')
    assert error_reason(ValueError('first\nsecond')) == 'first'


def test_every_parser_refuses_abbreviated_flags(demo_records, tmp_path):
    code, log = run_script('train.py', '--config', DEMO, '--dataset_train', demo_records[0],
                           '--output_dir', str(tmp_path / 'run'), '--max_step', '1')
    assert code == 2 and 'unrecognized arguments: --max_step' in log
    from utils.cli import job_parser
    parser = job_parser('x')
    parser.add_argument('--num_images')
    with pytest.raises(SystemExit):
        parser.parse_args(['--num_im', '3'])


def test_make_example_roundtrip_still_reads(tmp_path):
    """The schema check of every record accepts this suite's own records."""
    import cv2
    image = cv2.imencode('.png', np.zeros((4, 5, 3), np.uint8))[1].tobytes()
    label = cv2.imencode('.png', np.zeros((4, 5), np.uint8))[1].tobytes()
    path = write_records(str(tmp_path / 'one.record'), [
        make_example(image, 'png', label, 4, 5, 'a.png').SerializeToString()])
    assert scan_records([path], check_schema=True)[0].count == 1


def test_patterns_find_sharded_conversions_and_empty_files_are_named(demo_records, tmp_path):
    for index in range(2):
        shutil.copyfile(demo_records[1], str(tmp_path / ('x_val.record-%05d-of-00002' % index)))
    found = resolve_record_paths(str(tmp_path / '*_val.record'))
    assert [os.path.basename(p) for p in found] == ['x_val.record-00000-of-00002',
                                                    'x_val.record-00001-of-00002']
    empty = tmp_path / 'empty.record'
    empty.write_bytes(b'')
    with pytest.raises(DataError, match='TFRecord file %s is empty' % empty):
        resolve_record_paths('%s,%s' % (demo_records[1], empty))
