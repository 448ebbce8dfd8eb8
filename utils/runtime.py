"""Process and session set-up shared by the jobs (called from their main(), never on import)."""
import logging
import multiprocessing
import os
import sys
import warnings

import tensorflow.compat.v1 as tf


def setup_tensorflow():
    """TF1 graph mode, and TensorFlow's deprecation chatter kept out of users' logs."""
    tf.disable_eager_execution()
    tf.logging.set_verbosity(tf.logging.ERROR)
    warnings.filterwarnings('ignore', message='.*layer.apply.*is deprecated')


def make_logger(name):
    """A timestamped logger on stdout; returns its info method."""
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s', stream=sys.stdout)
    return logging.getLogger(name).info


def available_cpus():
    """The cores this process may run on (its affinity), else all of the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (
        multiprocessing.cpu_count())


def session_config(devices=()):
    """No device is pinned: ops go to a GPU (cuDNN) when there is one, else to the CPU.

    `devices` naming several CPUs ('/cpu:0', '/cpu:1') makes that many logical CPU devices
    (for data-parallel runs and their tests on machines without GPUs)."""
    cpus = sum(1 for d in devices if 'cpu' in d.lower())
    proto = tf.ConfigProto(allow_soft_placement=True,
                           device_count={'CPU': cpus} if cpus > 1 else None)
    proto.gpu_options.allow_growth = True
    return proto
