"""Faults and bad input in prediction and export: nonsense sizes, images over the pixel limit,
unreadable videos among other inputs, damaged exported models and calibration records, and
the temporary folder of a killed export."""
import os
import queue
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

import count_ops
import export_model
import predict
from tests.conftest import ROOT, run_script
from utils.data.pixels import PIXELS_FLAG
from utils.deploy.export import export_model as export_run, remove_killed_exports
from utils.errors import DataError
from utils.inference import image_files, video
from utils.deploy.exported import ExportedPredictor
from utils.inference.image_files import predict_files
from utils.inference.predictor import Predictor
from utils.inference.tiling import Tiling, tiled_class_map
from utils.inference.video import read_batches
from utils.rundir import CONFIG_FILENAME, load_run

PREDICT = ['--run_dir', 'r', '--input', 'x.png', '--output_dir', 'o']
COUNT = ['--model', 'fcn32s', '--input_size', '64,64']
EXPORT = ['--run_dir', 'r', '--export_dir', 'e']


@pytest.mark.parametrize('parse, argv, message', [
    (predict.parse_args, PREDICT + ['--max_side', '16'], '--max_side: 16 is below 32'),
    (predict.parse_args, PREDICT + ['--max_side', '-1'], "'-1' is not an integer >= 0"),
    (predict.parse_args, PREDICT + ['--tile', '0'], '--tile: 0 is below 32'),
    (predict.parse_args, PREDICT + ['--tile', '-512'], "'-512' is not an integer >= 0"),
    (predict.parse_args, PREDICT + ['--tile', '31'], '--tile: 31 is below 32'),
    (predict.parse_args, PREDICT + ['--tile', '64', '--tile_overlap', '64'],
     "--tile_overlap: 64 is not below the tile's 64 pixels"),
    (predict.parse_args, PREDICT + ['--tile', '64', '--tile_overlap', '-1'],
     "'-1' is not an integer >= 0"),
    (predict.parse_args, PREDICT + ['--tile_overlap', '8'], '--tile_overlap: applies with --tile'),
    (predict.parse_args, PREDICT + ['--batch_size', '0'], "'0' is not an integer >= 1"),
    (predict.parse_args, PREDICT + [PIXELS_FLAG, '-5'], "'-5' is not an integer >= 0"),
    (count_ops.parse_args, COUNT + ['--cameras', '0'], "'0' is not an integer >= 1"),
    (count_ops.parse_args, COUNT + ['--fps', '-15'], "'-15' is not a number >= 0"),
    (count_ops.parse_args, COUNT + ['--fps', '0'], '--fps: a camera budget of 0 frames'),
    (count_ops.parse_args, COUNT + ['--budget_gops', '0'], '--budget_gops: a budget of 0'),
    (count_ops.parse_args, ['--model', 'fcn32s', '--input_size', '16,16'], 'each >= 32'),
    (export_model.parse_args, EXPORT + ['--cameras', '-2'], "'-2' is not an integer >= 1"),
    (export_model.parse_args, EXPORT + ['--fps', '0'], '--fps: a camera budget of 0 frames'),
    (export_model.parse_args, EXPORT + ['--fps', 'nan'], "'nan' is not a number >= 0"),
    (export_model.parse_args, EXPORT + ['--benchmark_batch', '0'], "'0' is not an integer >= 1"),
    (export_model.parse_args, EXPORT + ['--benchmark_size', '8,8'], 'each >= 32'),
])
def test_nonsense_sizes_are_argparse_errors(parse, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err, err
    assert len([line for line in err.splitlines() if 'error:' in line]) == 1


def test_size_flags_keep_their_meaning():
    args = predict.parse_args(PREDICT + ['--tile', '512', '--max_side', '0'])
    assert (args.tile, args.tile_overlap, args.max_side) == (512, 128, 0)
    args = predict.parse_args(PREDICT + ['--tile', '32', '--tile_overlap', '0'])
    assert (args.tile, args.tile_overlap, args.max_side) == (32, 0, 1280)
    assert predict.parse_args(PREDICT).tile is None


def write_image(path, height, width, seed=0):
    cv2.imwrite(str(path), np.random.RandomState(seed).randint(0, 256, (height, width, 3),
                                                               np.uint8))


def test_large_images_and_unreadable_videos_are_skipped_and_the_rest_predicted(trained_run,
                                                                               tmp_path):
    write_image(tmp_path / 'small.png', 70, 90)
    write_image(tmp_path / 'big.png', 100, 120)  # 12000 pixels, over the limit below
    clip = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*'mp4v'), 5.0, (80, 64))
    for frame in range(6):
        writer.write(np.full((64, 80, 3), 40 * frame, np.uint8))
    writer.release()
    out = str(tmp_path / 'out')
    code, log = run_script('predict.py', '--run_dir', trained_run, '--input',
                           str(tmp_path / 'small.png'), str(tmp_path / 'big.png'),
                           str(tmp_path / 'missing.mp4'), clip, '--output_dir', out,
                           PIXELS_FLAG, '10000', '--tile', '64', '--tile_overlap', '16')
    assert code == 1 and 'Traceback' not in log, log  # the unreadable video
    assert 'skipped %s: it is 120x100 = 12000 pixels, above the limit of 10000 (%s 10000)' % (
        tmp_path / 'big.png', PIXELS_FLAG) in log, log
    assert 'Predicted 1 of 2 images' in log and 'skipped 1' in log
    assert 'error: cannot open video %s' % (tmp_path / 'missing.mp4') in log
    assert 'Predicted 6 frames of %s' % clip in log  # after the unreadable one
    assert os.path.exists(os.path.join(out, 'clip_overlay.mp4'))
    assert not os.path.exists(os.path.join(out, 'big_label.png'))
    # predict.py --tile wrote what the tiling gives (the image is 2x2 tiles of 64).
    label = cv2.imread(os.path.join(out, 'small_label.png'), cv2.IMREAD_UNCHANGED)
    predictor = Predictor.from_run(trained_run, log=lambda *_: None)
    image = cv2.imread(str(tmp_path / 'small.png'))[..., ::-1]
    np.testing.assert_array_equal(label, tiled_class_map(predictor, image, Tiling(64, 16)))
    predictor.close()


def test_a_decoder_error_mid_video_ends_its_frames_with_a_data_error():
    class BrokenCapture:
        frames = 0

        def read(self):
            self.frames += 1
            if self.frames > 3:
                raise cv2.error('the decoder broke')
            return True, np.zeros((4, 6, 3), np.uint8)

    items = queue.Queue()
    read_batches(BrokenCapture(), 2, items)  # the reader thread's work, here in line
    first, error, end = [items.get_nowait() for _ in range(3)]
    assert len(first) == 2 and isinstance(error, DataError) and end is video._END
    assert 'a frame does not decode (the decoder broke)' in str(error)


class FakePredictor:
    """The Predictor interface over a run's config, without a network."""

    def __init__(self, config):
        self.config = config

    def predict(self, image):
        logits = np.stack([image[..., c % 3].astype(np.float32) / 255.0
                           for c in range(self.config.num_classes)], -1)
        return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)


def test_tiles_with_the_crf_skip_images_too_large_for_it(trained_run, tmp_path, monkeypatch):
    monkeypatch.setattr(image_files, 'CRF_MAX_PIXELS', 2000)
    write_image(tmp_path / 'a.png', 30, 40)   # 1200 pixels: CRF on all of it
    write_image(tmp_path / 'b.png', 50, 60)   # 3000 pixels: over the (patched) limit
    config, _ = load_run(trained_run, log=lambda *_: None)
    lines = []
    written, skipped = predict_files(FakePredictor(config), [str(tmp_path / 'a.png'),
                                                             str(tmp_path / 'b.png')],
                                     str(tmp_path / 'out'), crf=True, log=lines.append,
                                     tiling=Tiling(32, 8))
    assert written == 1 and skipped == [str(tmp_path / 'b.png')]
    assert lines == ['skipped %s: its 60x50 pixels are too many for the dense CRF at full size '
                     'with --tile (at most 0.0 million); predict it without --crf, or without '
                     '--tile (the CRF then runs at --max_side)' % (tmp_path / 'b.png')]
    label = cv2.imread(str(tmp_path / 'out' / 'a_label.png'), cv2.IMREAD_UNCHANGED)
    assert label.shape == (30, 40)


@pytest.mark.parametrize('name, model_format', [('model.onnx', 'onnx'),
                                                ('model.tflite', 'tflite'),
                                                ('frozen_inference_graph.pb', 'frozen_graph'),
                                                ('', 'saved_model')])
def test_damaged_exported_models_are_one_line(trained_run, tmp_path, name, model_format):
    export_dir = tmp_path / 'exported'
    export_dir.mkdir()
    shutil.copy(os.path.join(trained_run, CONFIG_FILENAME), str(export_dir))
    target = export_dir / (name or 'saved_model.pb')
    target.write_bytes(np.random.RandomState(0).bytes(300))
    with pytest.raises(DataError, match='cannot be loaded as an exported %s model .*export it '
                       'again' % model_format):
        ExportedPredictor(str(export_dir / name) if name else str(export_dir))
    if model_format == 'frozen_graph':  # an empty file parses as an empty graph
        target.write_bytes(b'')
        with pytest.raises(DataError, match="The name 'images:0' refers to a Tensor"):
            ExportedPredictor(str(target))
    if model_format == 'onnx':  # as a user meets it
        code, log = run_script('predict.py', '--exported', str(target), '--input',
                               str(target), '--output_dir', str(tmp_path / 'out'))
        assert code == 1 and 'Traceback' not in log, log
        assert 'error: %s cannot be loaded as an exported onnx model (' % target in log
        assert 'parsing' in log.lower()  # the parser's own reason, e.g. wire format corrupt


def test_a_damaged_calibration_record_is_one_line(trained_run, tmp_path):
    record = tmp_path / 'calibration.record'
    record.write_bytes(np.random.RandomState(1).bytes(200))
    code, log = run_script('export_model.py', '--run_dir', trained_run, '--export_dir',
                           str(tmp_path / 'exported'), '--formats', 'tflite_int8',
                           '--input_size', '64,80', '--calibration_record', str(record))
    assert code == 1 and 'Traceback' not in log, log
    assert 'error: TFRecord file %s cannot be read (corrupted record' % record in log
    assert sorted(os.listdir(str(tmp_path))) == ['calibration.record']  # nothing half-made


def temporaries(folder):
    return [n for n in os.listdir(folder) if '.export-' in n]


def test_the_next_export_removes_what_a_killed_export_left(trained_run, tmp_path):
    export_dir = str(tmp_path / 'exported')
    env = dict(os.environ, TMPDIR=str(tmp_path / 'tmp'))  # autograph's files stay in here
    os.makedirs(env['TMPDIR'])
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'export_model.py'), '--run_dir',
                             trained_run, '--export_dir', export_dir, '--formats',
                             'saved_model,onnx'], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not temporaries(str(tmp_path)) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # into the SavedModel's writing
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    [left] = temporaries(str(tmp_path))
    assert left.startswith('.exported.export-%d-' % proc.pid) and left.endswith('.tmp')
    assert not os.path.exists(export_dir)
    # A running export's folder is kept; the killed one's goes, with a line.
    sleeper = subprocess.Popen(['sleep', '60'])
    running = tmp_path / ('.exported.export-%d-abc.tmp' % sleeper.pid)
    running.mkdir()
    config, checkpoint = load_run(trained_run, log=lambda *_: None)
    lines = []
    try:
        export_run(config, checkpoint, export_dir, log=lines.append)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert len(lines) == 1 and lines[0].startswith(
        'Removed what 1 killed export(s) to %s left: %s (' % (export_dir, left)), lines
    assert temporaries(str(tmp_path)) == [running.name]
    assert os.path.isfile(os.path.join(export_dir, 'saved_model.pb'))
    assert remove_killed_exports(export_dir, log=lines.append) == 1  # its process has ended
    assert not temporaries(str(tmp_path))
