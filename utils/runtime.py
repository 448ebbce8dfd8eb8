"""Process set-up shared by the top-level jobs (called from their main(), never on import)."""
import logging
import sys
import warnings


def setup_tensorflow():
    """TF1 graph mode, and TensorFlow's deprecation chatter kept out of users' logs."""
    import tensorflow.compat.v1 as tf
    tf.disable_eager_execution()
    tf.logging.set_verbosity(tf.logging.ERROR)
    warnings.filterwarnings('ignore', message='.*layer.apply.*is deprecated')


def make_logger(name):
    """A timestamped logger on stdout; returns its info method."""
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s', stream=sys.stdout)
    return logging.getLogger(name).info
