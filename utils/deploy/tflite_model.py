"""TFLite export (float32, float16 weights, or full-integer int8 calibrated on images) with
builtin ops only, run by LiteRT.

TFLite needs a fixed input size: the model takes uint8 RGB [1, H, W, 3] (`images`) and gives
`classes` int32 [1, H, W] and `probabilities` float32 [1, H, W, n], preprocessing inside. The
upsampling is built from conv2d_transpose (TRANSPOSE_CONV), which computes what the matmul
version computes elsewhere; no Flex delegate is needed.
"""
import cv2
import numpy as np
import tensorflow.compat.v1 as tf
from ai_edge_litert.interpreter import Interpreter  # the successor of tf.lite.Interpreter

from utils.data.records import read_pairs
from utils.deploy.serving import build_serving_graph
from utils.errors import DataError, error_reason
from utils.fileio import atomic_write_bytes
from utils.inference.predictor import restore_model
from utils.runtime import available_cpus, session_config
from utils.startup import captured_stderr

TFLITE_FILENAME = 'model.tflite'
TFLITE_INT8_FILENAME = 'model_int8.tflite'
CALIBRATION_IMAGES = 100  # images of the calibration record used for int8 ranges
# What LiteRT raises for a file that is no (complete) TFLite model, or one without this suite's
# tensors.
LOAD_ERRORS = (ValueError, RuntimeError)


def record_pairs(record_spec, size, limit=0):
    """utils.data.records.read_pairs resized to a fixed-size model's size (height, width):
    images by area, labels by nearest neighbour. A damaged file is a DataError naming it."""
    try:
        for image, label in read_pairs(record_spec, limit):
            yield (cv2.resize(np.ascontiguousarray(image), size[::-1],
                              interpolation=cv2.INTER_AREA),
                   cv2.resize(label, size[::-1], interpolation=cv2.INTER_NEAREST))
    except tf.errors.OpError as e:
        raise DataError('TFRecord file %s cannot be read (%s); convert it again or give '
                        'another' % (record_spec, error_reason(e))) from None


def calibration_images(record_spec, input_size):
    """The first CALIBRATION_IMAGES images of `record_spec` at `input_size` (height, width),
    read before any conversion starts, so that a bad record fails the export at once."""
    images = [image for image, _ in record_pairs(record_spec, input_size, CALIBRATION_IMAGES)]
    if not images:
        raise DataError('calibration record %s holds no image that decodes; give training '
                        'records' % record_spec)
    return images


def export_tflite(config, checkpoint, path, input_size, float16=False, calibration=None):
    """Writes the checkpoint as a TFLite model of input size (height, width) to `path`; with
    `calibration` (uint8 RGB images of that size, see calibration_images), full-integer int8
    (uint8 image in) calibrated on them."""
    with tf.Graph().as_default():
        images, classes, probabilities = build_serving_graph(
            config, (1,) + tuple(input_size), portable=True)
        with tf.Session(config=session_config()) as session:
            restore_model(session, checkpoint, config)
            converter = tf.lite.TFLiteConverter.from_session(session, [images],
                                                             [classes, probabilities])
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            if calibration:
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = lambda: ([image[None]] for image in calibration)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = tf.uint8
            elif float16:
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.target_spec.supported_types = [tf.float16]
            with captured_stderr():  # its MLIR passes' chatter; shown if it fails
                model = converter.convert()
    atomic_write_bytes(path, model)
    return path


class TfliteModel:
    """A TFLite model on all cores: __call__(uint8 images [b, H, W, 3]) -> the named outputs,
    one image at a time (the model's batch is 1)."""

    def __init__(self, path, outputs):
        with captured_stderr():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate"
            self.interpreter = Interpreter(model_path=path, num_threads=available_cpus())
            self.interpreter.allocate_tensors()
        details = self.interpreter.get_input_details()[0]
        self.input_index = details['index']
        self.input_shape = tuple(int(v) for v in details['shape'][1:3])  # (H, W)
        by_name = {d['name'].split(':')[0]: d['index']
                   for d in self.interpreter.get_output_details()}
        missing = [name for name in outputs if name not in by_name]
        if missing:
            raise ValueError('the model has no output %s' % ', '.join(missing))
        self.output_indices = [by_name[name] for name in outputs]

    def __call__(self, images):
        results = [[] for _ in self.output_indices]
        for image in images:
            self.interpreter.set_tensor(self.input_index, image[None])
            self.interpreter.invoke()
            for result, index in zip(results, self.output_indices):
                result.append(self.interpreter.get_tensor(index)[0])
        return [np.stack(result) for result in results]

    def close(self):
        pass
