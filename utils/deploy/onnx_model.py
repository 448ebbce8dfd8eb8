"""ONNX export of the frozen serving graph (through tf2onnx), and the model run by onnxruntime.

The ONNX model keeps the serving contract: `images:0` uint8 RGB [batch, h, w, 3] of any size
in, `classes:0` int32 [batch, h, w] and `probabilities:0` float32 [batch, h, w, n] out,
preprocessing inside. It is the road to TensorRT and other runtimes.
"""
import logging

import onnx
import onnxruntime
from google.protobuf.message import DecodeError
import tensorflow.compat.v1 as tf
import tf2onnx
from onnxruntime.capi.onnxruntime_pybind11_state import (Fail, InvalidArgument, InvalidGraph,
                                                         InvalidProtobuf, NoSuchFile,
                                                         NotImplemented as NotSupported)

from utils.fileio import atomic_write_bytes

ONNX_FILENAME = 'model.onnx'
ONNX_OPSET = 13
# What onnx and onnxruntime raise for a file that is no (complete) ONNX model (DecodeError, a
# ValueError: not a protobuf); ValueError: a model without this suite's tensors.
LOAD_ERRORS = (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, NoSuchFile, NotSupported,
               DecodeError, ValueError)


def export_onnx(graph_def, path, inputs, outputs, opset=ONNX_OPSET):
    """Converts a frozen GraphDef to ONNX at `path` (atomically). inputs/outputs: tensor names
    ('images:0', ...)."""
    logging.getLogger('tf2onnx').setLevel(logging.ERROR)  # its per-op INFO lines
    with tf.Graph().as_default():
        model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=list(inputs),
                                                  output_names=list(outputs), opset=opset)
    atomic_write_bytes(path, model.SerializeToString())
    return path


class OnnxModel:
    """An ONNX model on onnxruntime's CPU provider (all cores): __call__(uint8 images
    [b, h, w, 3]) -> the named outputs."""

    def __init__(self, path, input_name, output_names):
        self.input_name = input_name
        self.output_names = list(output_names)
        model = onnx.load(path)
        names = {t.name for t in list(model.graph.input) + list(model.graph.output)}
        missing = [n for n in [input_name] + self.output_names if n not in names]
        if missing:
            raise ValueError('the model has no tensor %s' % ', '.join(missing))
        # onnxruntime runs every node of the graph whatever is fetched: outputs not asked for
        # are dropped, and the nodes only they need with them (the softmax of the
        # probabilities when only classes are fetched: 9% of the MobileNet FCN's time).
        kept = [output for output in model.graph.output if output.name in self.output_names]
        del model.graph.output[:]
        model.graph.output.extend(kept)
        self.session = onnxruntime.InferenceSession(model.SerializeToString(),
                                                    onnxruntime.SessionOptions(),
                                                    providers=['CPUExecutionProvider'])

    def __call__(self, images):
        return self.session.run(self.output_names, {self.input_name: images})

    def close(self):
        pass
