"""Export for deployment: a SavedModel and, beside it, a frozen graph, ONNX and TFLite models
(see each format's module for its tensors); loading any of them; the checks the export report
makes (parity with the checkpoint, mIoU, latency).

    export_model(config, checkpoint, 'exported/camvid', ('saved_model', 'onnx'))
    model = load_exported('exported/camvid', 'onnx')   # model(uint8 images) -> [classes, probs]
"""
import os
import re
import shutil
import tempfile
import time

import numpy as np

from utils.config import save_config
from utils.deploy import onnx_model, saved_model, tflite_model
from utils.deploy.onnx_model import ONNX_FILENAME, OnnxModel, export_onnx
from utils.deploy.saved_model import (FROZEN_GRAPH_FILENAME, ExportedModel, FrozenModel,
                                      write_saved_model)
from utils.deploy.serving import CLASSES_KEY, INPUT_KEY, PROBABILITIES_KEY
from utils.deploy.tflite_model import (TFLITE_FILENAME, TFLITE_INT8_FILENAME, TfliteModel,
                                       calibration_images, export_tflite, record_pairs)
from utils.evaluation.metrics import confusion_matrix, scores
from utils.errors import ConfigError, DataError, error_reason
from utils.fileio import output_error
from utils.rundir import CONFIG_FILENAME

FORMATS = ('saved_model', 'frozen_graph', 'onnx', 'tflite', 'tflite_int8')
REPORT_FILENAME = 'export_report.json'
PARITY_TOLERANCE = 0.001  # share of pixels a float format may classify otherwise (rounding)
INT8_MAX_IOU_DROP = 0.01  # mIoU that tflite_int8 may lose against the checkpoint to be deployed
# An export is built in `.NAME.export-PID-XXXXXXXX.tmp` beside EXPORT_DIR (NAME its folder name,
# PID the exporting process) and renamed when complete; a killed export leaves it behind.
TEMPORARY_PREFIX = '.%s.export-%d-'
TEMPORARY_SUFFIX = '.tmp'
TEMPORARY_PATTERN = r'\.%s\.export-(\d+)-\w+\.tmp'  # for re.fullmatch, NAME re.escape'd
LOAD_ERRORS = onnx_model.LOAD_ERRORS + saved_model.LOAD_ERRORS + tflite_model.LOAD_ERRORS


def format_path(export_dir, model_format):
    """The file (or, for the SavedModel, the folder) of an exported format."""
    return {'saved_model': export_dir,
            'frozen_graph': os.path.join(export_dir, FROZEN_GRAPH_FILENAME),
            'onnx': os.path.join(export_dir, ONNX_FILENAME),
            'tflite': os.path.join(export_dir, TFLITE_FILENAME),
            'tflite_int8': os.path.join(export_dir, TFLITE_INT8_FILENAME)}[model_format]


def size_on_disk(path):
    """Bytes of a file, or of the files of a SavedModel folder (its own files only)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path)
               for name in names if root != path or name in ('saved_model.pb', CONFIG_FILENAME))


def process_alive(pid):
    """Whether a process of this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def remove_killed_exports(export_dir, log=print):
    """Removes the temporary folders that killed exports to `export_dir` left beside it (those
    of exports still running are kept); returns how many."""
    parent, name = os.path.split(os.path.abspath(export_dir))
    stale = []
    for entry in sorted(os.listdir(parent)) if os.path.isdir(parent) else []:
        match = re.fullmatch(TEMPORARY_PATTERN % re.escape(name), entry)
        path = os.path.join(parent, entry)
        if not match or not os.path.isdir(path) or (int(match.group(1)) != os.getpid()
                                                    and process_alive(int(match.group(1)))):
            continue
        size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path)
                   for f in files)
        shutil.rmtree(path, ignore_errors=True)
        stale.append('%s (%.1f MB)' % (os.path.basename(path), size / 2 ** 20))
    if stale:
        log('Removed what %d killed export(s) to %s left: %s'
            % (len(stale), export_dir, ', '.join(stale)))
    return len(stale)


def export_model(config, checkpoint, export_dir, formats=('saved_model',), input_size=None,
                 float16=False, calibration_record=None, log=print):
    """Writes a SavedModel of the checkpoint to `export_dir` (which must not exist yet), and
    with 'frozen_graph' in `formats` also EXPORT_DIR/frozen_inference_graph.pb, with 'onnx'
    EXPORT_DIR/model.onnx (converted from the frozen graph, which is then written too), with
    'tflite' EXPORT_DIR/model.tflite for images of `input_size` (height, width; float16
    weights with `float16`), with 'tflite_int8' EXPORT_DIR/model_int8.tflite (full-integer,
    calibrated on `calibration_record`).

    The model is built in a temporary folder beside it and renamed when complete (those that
    killed exports left are removed first, with a line through `log`); the run's config is
    saved in it as config.yaml.
    """
    if os.path.exists(export_dir):
        raise FileExistsError('export dir %s exists; remove it or choose another' % export_dir)
    if ('tflite' in formats or 'tflite_int8' in formats) and not input_size:
        raise ConfigError('TFLite models take one input size: give --input_size HEIGHT,WIDTH')
    if 'tflite_int8' in formats and not calibration_record:
        raise ConfigError('tflite_int8 is calibrated on images: give --calibration_record '
                          '(e.g. a slice of the training records)')
    calibration = (calibration_images(calibration_record, input_size)
                   if 'tflite_int8' in formats else None)
    parent = os.path.dirname(os.path.abspath(export_dir))
    remove_killed_exports(export_dir, log)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp_root = tempfile.mkdtemp(
            prefix=TEMPORARY_PREFIX % (os.path.basename(os.path.abspath(export_dir)),
                                       os.getpid()),
            suffix=TEMPORARY_SUFFIX, dir=parent)
    except OSError as e:
        raise output_error(export_dir, e) from None
    tmp_dir = os.path.join(tmp_root, 'model')
    try:
        frozen = write_saved_model(config, checkpoint, tmp_dir,
                                   'frozen_graph' in formats or 'onnx' in formats)
        if 'tflite' in formats:
            export_tflite(config, checkpoint, os.path.join(tmp_dir, TFLITE_FILENAME),
                          input_size, float16)
        if 'tflite_int8' in formats:
            export_tflite(config, checkpoint, os.path.join(tmp_dir, TFLITE_INT8_FILENAME),
                          input_size, calibration=calibration)
        if 'onnx' in formats:
            export_onnx(frozen, os.path.join(tmp_dir, ONNX_FILENAME), [INPUT_KEY + ':0'],
                        [CLASSES_KEY + ':0', PROBABILITIES_KEY + ':0'])
        save_config(config, os.path.join(tmp_dir, CONFIG_FILENAME))
        os.replace(tmp_dir, export_dir)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return export_dir


def load_exported(export_dir, model_format='saved_model',
                  outputs=(CLASSES_KEY, PROBABILITIES_KEY)):
    """The exported model of `model_format` (FORMATS) in `export_dir` (see open_exported)."""
    return open_exported(format_path(export_dir, model_format), model_format, outputs)


def open_exported(path, model_format='saved_model', outputs=(CLASSES_KEY, PROBABILITIES_KEY)):
    """The exported model of `model_format` (FORMATS) at `path` (the SavedModel's folder, else
    the model's file): __call__(uint8 images [b, h, w, 3]) -> the named `outputs`. A file that
    is damaged or no export of this suite is a DataError naming it."""
    try:
        if model_format == 'frozen_graph':
            return FrozenModel(path, outputs)
        if model_format in ('tflite', 'tflite_int8'):
            return TfliteModel(path, outputs)
        if model_format == 'onnx':
            return OnnxModel(path, INPUT_KEY + ':0', ['%s:0' % key for key in outputs])
        return ExportedModel(path, outputs)
    except LOAD_ERRORS as e:
        raise DataError('%s cannot be loaded as an exported %s model (%s); it is damaged, '
                        'incomplete or not from export_model.py: export it again'
                        % (path, model_format, error_reason(e))) from None


def parity_check(predictor, model, images):
    """Pixels whose class differs between the checkpoint and the exported model, per image."""
    return [int((predictor.predict(image).argmax(-1) != model(image[None])[0][0]).sum())
            for image in images]


def compare_mean_iou(predictor, model, record_spec, size, num_classes):
    """(mIoU of the checkpoint, mIoU of the exported `model`) on the images of `record_spec`
    resized to `size` (height, width), labels by nearest neighbour."""
    hists = [np.zeros((num_classes, num_classes), np.int64) for _ in range(2)]
    for image, label in record_pairs(record_spec, size):
        hists[0] += confusion_matrix(label, predictor.predict(image).argmax(-1), num_classes)
        hists[1] += confusion_matrix(label, model(image[None])[0][0], num_classes)
    return tuple(scores(hist)['mean_iou'] for hist in hists)


def benchmark_latency(model, height, width, batch=1, runs=20, warmup=3):
    """Median milliseconds per image of the exported model on random images of that size."""
    images = np.random.RandomState(0).randint(0, 256, (batch, height, width, 3), np.uint8)
    for _ in range(warmup):
        model(images)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model(images)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times)) / batch


def recommend_format(rows):
    """The format to deploy on the machine the latencies were measured on, as the report's
    `recommended` entry {'format', 'images_per_second', 'why'} (format None when none fits):
    the fastest format whose results are vouched for: a float format within PARITY_TOLERANCE
    of the checkpoint (or not compared), tflite_int8 only with its mIoU measured within
    INT8_MAX_IOU_DROP of the checkpoint's."""
    def choice(row, why):
        return {'format': row and row['format'], 'why': why,
                'images_per_second': row and row['images_per_second']}

    timed = [row for row in rows if 'images_per_second' in row]
    if not timed:
        return choice(None, 'no format was timed (give --benchmark_size)')
    vouched, left_out = [], []
    for row in timed:
        if row['format'] == 'tflite_int8':
            if 'mean_iou' not in row:
                left_out.append('tflite_int8 (accuracy not measured: give --validation_record)')
                continue
            if row['checkpoint_mean_iou'] - row['mean_iou'] > INT8_MAX_IOU_DROP:
                left_out.append('tflite_int8 (mIoU %.2f points below the checkpoint)'
                                % (100 * (row['checkpoint_mean_iou'] - row['mean_iou'])))
                continue
        elif row.get('differing_fraction', 0) > PARITY_TOLERANCE:
            left_out.append('%s (disagrees with the checkpoint)' % row['format'])
            continue
        vouched.append(row)
    if not vouched:
        return choice(None, 'no timed format is vouched for: ' + '; '.join(left_out))
    why = 'the fastest of %s here' % ', '.join(row['format'] for row in vouched)
    if left_out:
        why += '; left out: ' + '; '.join(left_out)
    return choice(max(vouched, key=lambda row: row['images_per_second']), why)
