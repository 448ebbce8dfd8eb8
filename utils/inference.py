"""Inference from a training run: its saved config and checkpoint, images of any size in,
per-class probabilities at the input size out (optionally multi-scale and flipped).

    predictor = Predictor.from_run('runs/camvid')
    probabilities = predictor.predict(rgb_uint8_image)   # [h, w, num_classes]
"""
import os

import numpy as np
import tensorflow.compat.v1 as tf

from nets import build_network
from utils.checkpoints import CheckpointError, resolve_checkpoint
from utils.config import CONFIG_FILENAME, ConfigError, resolve_config
from utils.preprocessing import subtract_mean

TRAIN_SUBDIR = 'train'


def load_run(run_dir, checkpoint=None):
    """(Config, checkpoint prefix) of a training output directory.

    `checkpoint` (a prefix or directory) overrides the run's latest checkpoint.
    """
    config_path = os.path.join(run_dir, CONFIG_FILENAME)
    if not os.path.isfile(config_path):
        raise ConfigError('%s has no %s: --run_dir must be the --output_dir of a training run'
                          % (run_dir, CONFIG_FILENAME))
    config = resolve_config(config_path)
    if checkpoint:
        return config, resolve_checkpoint(checkpoint)
    train_dir = os.path.join(run_dir, TRAIN_SUBDIR)
    latest = tf.train.latest_checkpoint(train_dir) if os.path.isdir(train_dir) else None
    if latest is None:
        raise CheckpointError('run %s holds no checkpoint in %s yet; train first or give '
                              '--checkpoint' % (run_dir, train_dir))
    return config, latest


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
            scaled = tf.image.resize(inputs, scaled_size, method='bilinear')
        for flipped in ((False, True) if flip else (False,)):
            net_input = tf.reverse(scaled, [2]) if flipped else scaled
            with tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE):
                logits, _ = build_network(net_input, config.num_classes, False,
                                          **config.network_args())
            if flipped:
                logits = tf.reverse(logits, [2])
            if scale != 1.0:
                logits = tf.image.resize(logits, size, method='bilinear')
            outputs.append(logits)
    return outputs


def session_config(devices=()):
    """No device is pinned: ops go to a GPU (cuDNN) when there is one, else to the CPU.

    `devices` naming several CPUs ('/cpu:0', '/cpu:1') makes that many logical CPU devices
    (for data-parallel runs and their tests on machines without GPUs)."""
    cpus = sum(1 for d in devices if 'cpu' in d.lower())
    proto = tf.ConfigProto(allow_soft_placement=True,
                           device_count={'CPU': cpus} if cpus > 1 else None)
    proto.gpu_options.allow_growth = True
    return proto


class Predictor:
    """A restored model in its own graph and session."""

    def __init__(self, config, checkpoint, scales=(1.0,), flip=False):
        self.config = config
        self.checkpoint = checkpoint
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.images = tf.placeholder(tf.uint8, [None, None, None, 3], name='images')
            self.probabilities = build_probabilities(self.images, config, scales, flip)
            saver = tf.train.Saver(tf.model_variables())
        self.session = tf.Session(graph=self.graph, config=session_config())
        try:
            saver.restore(self.session, checkpoint)
        except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as e:
            raise CheckpointError('checkpoint %s does not fit the run\'s model %s: %s'
                                  % (checkpoint, config.model, e.message.split('\n')[0])) from None

    @classmethod
    def from_run(cls, run_dir, checkpoint=None, scales=(1.0,), flip=False):
        config, checkpoint = load_run(run_dir, checkpoint)
        return cls(config, checkpoint, scales, flip)

    def predict(self, image):
        """uint8 RGB [h, w, 3] -> float32 probabilities [h, w, num_classes]."""
        return self.predict_batch(np.asarray(image)[None])[0]

    def predict_batch(self, images):
        """uint8 RGB [batch, h, w, 3] (same size) -> float32 [batch, h, w, num_classes]."""
        return self.session.run(self.probabilities, {self.images: images})

    def close(self):
        self.session.close()
