"""Inference from a training run: its saved config and checkpoint, images of any size in,
per-class probabilities at the input size out (optionally multi-scale and flipped).

    predictor = Predictor.from_run('runs/camvid')
    probabilities = predictor.predict(rgb_uint8_image)   # [h, w, num_classes]
"""
import numpy as np
import tensorflow
import tensorflow.compat.v1 as tf

from nets import build_network
from nets.inception_v3_fcn import OUTPUT_STRIDE as INCEPTION_STRIDE
from nets.mobilenet_v1 import OUTPUT_STRIDE as MOBILENET_STRIDE
from nets.vgg import OUTPUT_STRIDE as VGG_STRIDE
from nets.inputs import subtract_mean
from utils.errors import CheckpointError, error_reason
from utils.rundir import load_run
from utils.runtime import session_config

# The smallest image side worth running: every network's coarsest stride, below which the
# input gives not even one feature of its own at the top, only padding.
MIN_INPUT_SIDE = max(VGG_STRIDE, MOBILENET_STRIDE, INCEPTION_STRIDE)


def build_probabilities(images, config, scales=(1.0,), flip=False):
    """uint8/float RGB [batch, h, w, 3] (0..255) -> softmax probabilities [batch, h, w, n].

    With several `scales` and/or `flip`, the input is resized/flipped, each result brought back
    to the input size, and the probabilities averaged. Reuses the network's variables after
    the first call.
    """
    views = build_view_logits(images, config, scales, flip)
    return tf.add_n([tf.nn.softmax(v) for v in views]) / len(views)


def build_view_logits(images, config, scales=(1.0,), flip=False):
    """The logits [batch, h, w, n] of each view (scale x flip) of the input, at its size."""
    inputs = subtract_mean(images)
    size = tf.shape(inputs)[1:3]
    outputs = []
    for scale in scales:
        scaled = inputs
        if scale != 1.0:
            scaled_size = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * scale),
                                             tf.int32), 1)
            scaled = tensorflow.image.resize(inputs, scaled_size, method='bilinear')
        for flipped in ((False, True) if flip else (False,)):
            net_input = tf.reverse(scaled, [2]) if flipped else scaled
            with tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE):
                logits, _ = build_network(net_input, config.num_classes, False,
                                          **config.network_args())
            if flipped:
                logits = tf.reverse(logits, [2])
            if scale != 1.0:
                logits = tensorflow.image.resize(logits, size, method='bilinear')
            outputs.append(logits)
    return outputs


def restore_model(session, checkpoint, config):
    """Restores the model variables of the default graph from `checkpoint`; CheckpointError
    naming it when it does not fit the model or is damaged (torn, truncated)."""
    try:
        tf.train.Saver(tf.model_variables()).restore(session, checkpoint)
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as e:
        raise CheckpointError('checkpoint %s does not fit the run\'s model %s (another network '
                              'or other settings?): %s' % (checkpoint, config.model,
                                                           error_reason(e))) from None
    except tf.errors.OpError as e:
        raise CheckpointError('checkpoint %s is damaged (%s); give another with --checkpoint '
                              'or --latest, or train again' % (checkpoint, error_reason(e))
                              ) from None


class Predictor:
    """A restored model in its own graph and session."""

    def __init__(self, config, checkpoint, scales=(1.0,), flip=False):
        self.config = config
        self.checkpoint = checkpoint
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.images = tf.placeholder(tf.uint8, [None, None, None, 3], name='images')
            self.probabilities = build_probabilities(self.images, config, scales, flip)
            self.session = tf.Session(graph=self.graph, config=session_config())
            restore_model(self.session, checkpoint, config)

    @classmethod
    def from_run(cls, run_dir, checkpoint=None, scales=(1.0,), flip=False, latest=False,
                 log=print):
        """The model of a run directory (its checkpoint chosen by utils.rundir.load_run)."""
        config, checkpoint = load_run(run_dir, checkpoint, latest, log)
        return cls(config, checkpoint, scales, flip)

    def predict(self, image):
        """uint8 RGB [h, w, 3] -> float32 probabilities [h, w, num_classes]."""
        return self.predict_batch(np.asarray(image)[None])[0]

    def predict_batch(self, images):
        """uint8 RGB [batch, h, w, 3] (same size) -> float32 [batch, h, w, num_classes]."""
        return self.session.run(self.probabilities, {self.images: images})

    def close(self):
        self.session.close()
