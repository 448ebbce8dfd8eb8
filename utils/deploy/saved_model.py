"""The SavedModel and the frozen graph: writing them from a checkpoint and loading them.

Serving signature `serving_default`: input `images` uint8 RGB [batch, h, w, 3] of any size;
outputs `classes` int32 [batch, h, w] and `probabilities` float32 [batch, h, w, num_classes].
Preprocessing (mean subtraction, padding to the network stride, cropping back) is inside. The
frozen graph (`frozen_inference_graph.pb`, the TF1 convention) has the same tensors by name:
`images:0` in, `classes:0` and `probabilities:0` out.
"""
import os

import tensorflow.compat.v1 as tf
from google.protobuf.message import DecodeError

from utils.deploy.serving import (CLASSES_KEY, INPUT_KEY, PROBABILITIES_KEY, SIGNATURE,
                                  build_serving_graph)
from utils.inference.predictor import restore_model
from utils.runtime import session_config

FROZEN_GRAPH_FILENAME = 'frozen_inference_graph.pb'
# What loading raises for a file that is no (complete) model of this suite: a damaged protobuf,
# a SavedModel TensorFlow cannot parse or without the serving signature, missing tensors.
LOAD_ERRORS = (DecodeError, OSError, RuntimeError, ValueError)


def write_saved_model(config, checkpoint, export_dir, frozen_graph=False):
    """Writes the SavedModel of the checkpoint to `export_dir` and, with `frozen_graph`,
    EXPORT_DIR/frozen_inference_graph.pb; returns the frozen GraphDef (or None)."""
    frozen = None
    with tf.Graph().as_default() as graph:
        images, classes, probabilities = build_serving_graph(config)
        with tf.Session(config=session_config()) as session:
            restore_model(session, checkpoint, config)  # a damaged one is one line
            builder = tf.saved_model.Builder(export_dir)
            signature = tf.saved_model.predict_signature_def(
                inputs={INPUT_KEY: images},
                outputs={CLASSES_KEY: classes, PROBABILITIES_KEY: probabilities})
            builder.add_meta_graph_and_variables(
                session, [tf.saved_model.SERVING], signature_def_map={SIGNATURE: signature},
                strip_default_attrs=True)
            builder.save()
            if frozen_graph:
                frozen = tf.graph_util.convert_variables_to_constants(
                    session, graph.as_graph_def(), [CLASSES_KEY, PROBABILITIES_KEY])
                with open(os.path.join(export_dir, FROZEN_GRAPH_FILENAME), 'wb') as f:
                    f.write(frozen.SerializeToString())
    return frozen


class ExportedModel:
    """A loaded SavedModel: __call__(uint8 images [b, h, w, 3]) -> [classes, probabilities]
    (or just the named `outputs`)."""

    def __init__(self, export_dir, outputs=(CLASSES_KEY, PROBABILITIES_KEY)):
        self.graph = tf.Graph()
        self.session = tf.Session(graph=self.graph, config=session_config())
        with self.graph.as_default():
            meta = tf.saved_model.loader.load(self.session, [tf.saved_model.SERVING], export_dir)
        if SIGNATURE not in meta.signature_def:
            raise ValueError('no %s signature' % SIGNATURE)
        signature = meta.signature_def[SIGNATURE]
        missing = [k for k in (INPUT_KEY,) if k not in signature.inputs] + [
            k for k in outputs if k not in signature.outputs]
        if missing:
            raise ValueError('its signature has no %s' % ', '.join(missing))
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
        self.output_names = ['%s:0' % key for key in outputs]
        try:  # an empty file parses as an empty graph
            for name in [INPUT_KEY + ':0'] + self.output_names:
                self.graph.get_tensor_by_name(name)
        except KeyError as e:
            raise ValueError(e.args[0]) from None
        self.session = tf.Session(graph=self.graph, config=session_config())

    def __call__(self, images):
        return self.session.run(self.output_names, {INPUT_KEY + ':0': images})

    def close(self):
        self.session.close()
