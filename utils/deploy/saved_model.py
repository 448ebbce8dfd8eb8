"""Export for deployment (a SavedModel; beside it a frozen graph, ONNX and TFLite models), the
parity check against the checkpoint, and latency.

Serving signature `serving_default`: input `images` uint8 RGB [batch, h, w, 3] of any size;
outputs `classes` int32 [batch, h, w] and `probabilities` float32 [batch, h, w, num_classes].
Preprocessing (mean subtraction, padding to the network stride, cropping back) is inside. The
frozen graph (`frozen_inference_graph.pb`, the TF1 convention) has the same tensors by name:
`images:0` in, `classes:0` and `probabilities:0` out.
"""
import os
import shutil
import tempfile
import time

import cv2
import numpy as np
import tensorflow.compat.v1 as tf

from utils.config import resolve_config, save_config
from utils.deploy.onnx_model import ONNX_FILENAME, OnnxModel, export_onnx
from utils.deploy.serving import (CLASSES_KEY, INPUT_KEY, PROBABILITIES_KEY, SIGNATURE,
                                  build_serving_graph)
from utils.deploy.tflite_model import (TFLITE_FILENAME, TFLITE_INT8_FILENAME, TfliteModel,
                                       export_tflite, record_pairs)
from utils.evaluation.metrics import confusion_matrix, scores
from utils.errors import ConfigError
from utils.fileio import output_error
from utils.inference.image_files import resized_channels
from utils.rundir import CONFIG_FILENAME
from utils.runtime import session_config

FROZEN_GRAPH_FILENAME = 'frozen_inference_graph.pb'
FORMATS = ('saved_model', 'frozen_graph', 'onnx', 'tflite', 'tflite_int8')
REPORT_FILENAME = 'export_report.json'
PARITY_TOLERANCE = 0.001  # share of pixels a float format may classify otherwise (rounding)


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


def export_saved_model(config, checkpoint, export_dir, formats=('saved_model',),
                       input_size=None, float16=False, calibration_record=None):
    """Writes a SavedModel of the checkpoint to `export_dir` (which must not exist yet), and
    with 'frozen_graph' in `formats` also EXPORT_DIR/frozen_inference_graph.pb, with 'onnx'
    EXPORT_DIR/model.onnx (converted from the frozen graph, which is then written too), with
    'tflite' EXPORT_DIR/model.tflite for images of `input_size` (height, width; float16
    weights with `float16`), with 'tflite_int8' EXPORT_DIR/model_int8.tflite (full-integer,
    calibrated on `calibration_record`).

    The model is built in a temporary folder beside it and renamed when complete; the run's
    config is saved in it as config.yaml.
    """
    if os.path.exists(export_dir):
        raise FileExistsError('export dir %s exists; remove it or choose another' % export_dir)
    if ('tflite' in formats or 'tflite_int8' in formats) and not input_size:
        raise ConfigError('TFLite models take one input size: give --input_size HEIGHT,WIDTH')
    if 'tflite_int8' in formats and not calibration_record:
        raise ConfigError('tflite_int8 is calibrated on images: give --calibration_record '
                          '(e.g. a slice of the training records)')
    parent = os.path.dirname(os.path.abspath(export_dir))
    try:
        os.makedirs(parent, exist_ok=True)
        tmp_root = tempfile.mkdtemp(prefix='.export-', dir=parent)
    except OSError as e:
        raise output_error(export_dir, e) from None
    tmp_dir = os.path.join(tmp_root, 'model')
    try:
        with tf.Graph().as_default() as graph:
            images, classes, probabilities = build_serving_graph(config)
            with tf.Session(config=session_config()) as session:
                tf.train.Saver(tf.model_variables()).restore(session, checkpoint)
                builder = tf.saved_model.Builder(tmp_dir)
                signature = tf.saved_model.predict_signature_def(
                    inputs={INPUT_KEY: images},
                    outputs={CLASSES_KEY: classes, PROBABILITIES_KEY: probabilities})
                builder.add_meta_graph_and_variables(
                    session, [tf.saved_model.SERVING], signature_def_map={SIGNATURE: signature},
                    strip_default_attrs=True)
                builder.save()
                if 'frozen_graph' in formats or 'onnx' in formats:
                    frozen = tf.graph_util.convert_variables_to_constants(
                        session, graph.as_graph_def(), [CLASSES_KEY, PROBABILITIES_KEY])
                    with open(os.path.join(tmp_dir, FROZEN_GRAPH_FILENAME), 'wb') as f:
                        f.write(frozen.SerializeToString())
        if 'tflite' in formats:
            export_tflite(config, checkpoint, os.path.join(tmp_dir, TFLITE_FILENAME),
                          input_size, float16)
        if 'tflite_int8' in formats:
            export_tflite(config, checkpoint, os.path.join(tmp_dir, TFLITE_INT8_FILENAME),
                          input_size, calibration_record=calibration_record)
        if 'onnx' in formats:
            export_onnx(frozen, os.path.join(tmp_dir, ONNX_FILENAME), [INPUT_KEY + ':0'],
                        [CLASSES_KEY + ':0', PROBABILITIES_KEY + ':0'])
        save_config(config, os.path.join(tmp_dir, CONFIG_FILENAME))
        os.replace(tmp_dir, export_dir)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return export_dir


class ExportedModel:
    """A loaded SavedModel: __call__(uint8 images [b, h, w, 3]) -> [classes, probabilities]
    (or just the named `outputs`)."""

    def __init__(self, export_dir, outputs=(CLASSES_KEY, PROBABILITIES_KEY)):
        self.graph = tf.Graph()
        self.session = tf.Session(graph=self.graph, config=session_config())
        with self.graph.as_default():
            meta = tf.saved_model.loader.load(self.session, [tf.saved_model.SERVING], export_dir)
        signature = meta.signature_def[SIGNATURE]
        self.input_name = signature.inputs[INPUT_KEY].name
        self.output_names = [signature.outputs[key].name for key in outputs]

    def __call__(self, images):
        return self.session.run(self.output_names, {self.input_name: images})

    def close(self):
        self.session.close()


class FrozenModel:
    """A loaded frozen graph: __call__(uint8 images [b, h, w, 3]) -> [classes, probabilities]
    (or just the named `outputs`)."""

    def __init__(self, path, outputs=(CLASSES_KEY, PROBABILITIES_KEY)):
        graph_def = tf.GraphDef()
        with open(path, 'rb') as f:
            graph_def.ParseFromString(f.read())
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.import_graph_def(graph_def, name='')
        self.session = tf.Session(graph=self.graph, config=session_config())
        self.output_names = ['%s:0' % key for key in outputs]

    def __call__(self, images):
        return self.session.run(self.output_names, {INPUT_KEY + ':0': images})

    def close(self):
        self.session.close()


def load_exported(export_dir, model_format='saved_model',
                  outputs=(CLASSES_KEY, PROBABILITIES_KEY)):
    """The exported model of `model_format` (FORMATS) in `export_dir`."""
    path = format_path(export_dir, model_format)
    if model_format == 'frozen_graph':
        return FrozenModel(path, outputs)
    if model_format in ('tflite', 'tflite_int8'):
        return TfliteModel(path, outputs)
    if model_format == 'onnx':
        return OnnxModel(path, INPUT_KEY + ':0', ['%s:0' % key for key in outputs])
    return ExportedModel(path, outputs)


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


class ExportedPredictor:
    """An exported model (SavedModel folder or frozen .pb) behind the Predictor interface
    (`config`, `predict`, `predict_batch`), so that predict.py checks a deployment end to end.
    The config is the config.yaml saved in the export folder."""

    def __init__(self, path):
        by_extension = {'.pb': 'frozen_graph', '.onnx': 'onnx', '.tflite': 'tflite'}
        if os.path.isdir(path):
            export_dir, model_format = path, 'saved_model'
        elif os.path.splitext(path)[1] in by_extension and os.path.isfile(path):
            export_dir = os.path.dirname(path) or '.'
            model_format = by_extension[os.path.splitext(path)[1]]
        else:
            raise ConfigError('--exported %s is neither a SavedModel folder nor a frozen .pb '
                              'graph, .onnx or .tflite model' % path)
        config_path = os.path.join(export_dir, CONFIG_FILENAME)
        if not os.path.isfile(config_path):
            raise ConfigError('%s has no %s beside it; export it with export_model.py'
                              % (path, CONFIG_FILENAME))
        self.config = resolve_config(config_path)
        self.model = load_exported(export_dir, model_format, outputs=(PROBABILITIES_KEY,))

    def predict(self, image):
        """uint8 RGB [h, w, 3] -> float32 probabilities [h, w, num_classes]."""
        return self.predict_batch(np.asarray(image)[None])[0]

    def predict_batch(self, images):
        """A model of one input size (TFLite) gets the images resized to it, and its
        probabilities are resized back."""
        size = getattr(self.model, 'input_shape', None)
        height, width = images.shape[1:3]
        if size is None or size == (height, width):
            return self.model(images)[0]
        resized = np.stack([cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)
                            for image in images])
        return np.stack([np.stack(list(resized_channels(p, (height, width))), axis=-1)
                         for p in self.model(resized)[0]])
