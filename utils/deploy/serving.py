"""The serving contract shared by every exported format: uint8 RGB images in (`images`), the
class map (`classes`, int32) and per-class probabilities (`probabilities`, float32) out at the
input's size, preprocessing inside."""
import tensorflow.compat.v1 as tf
import tf_slim as slim

from nets.fcn import upsample
from utils.inference.predictor import build_view_logits

SIGNATURE = 'serving_default'
INPUT_KEY = 'images'
CLASSES_KEY = 'classes'
PROBABILITIES_KEY = 'probabilities'


def build_serving_graph(config, input_shape=(None, None, None), portable=False):
    """(images, classes, probabilities) tensors, named by the keys above, in the default
    graph; images [batch, h, w, 3] of `input_shape` (batch, h, w). `portable` builds the
    upsampling from conv2d_transpose (TFLite builtins) instead of matmuls: the same numbers."""
    images = tf.placeholder(tf.uint8, list(input_shape) + [3], name=INPUT_KEY)
    with slim.arg_scope([upsample], portable=portable):
        [logits] = build_view_logits(images, config)
    probabilities = tf.nn.softmax(logits, name=PROBABILITIES_KEY)
    # From the logits, so that a caller fetching only the classes skips the softmax.
    classes = tf.argmax(logits, axis=-1, output_type=tf.int32, name=CLASSES_KEY)
    return images, classes, probabilities
