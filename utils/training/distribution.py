"""Data parallelism in graph mode: tf.distribute strategies and the multi-worker server."""
import json
import os

import tensorflow
import tensorflow.compat.v1 as tf

from utils.errors import ConfigError


def cluster_task():
    """(cluster dict, task type, task index, is_chief) from the TF_CONFIG environment variable."""
    try:
        tf_config = json.loads(os.environ.get('TF_CONFIG', ''))
        cluster, task = tf_config['cluster'], tf_config['task']
        task_type, index = task['type'], int(task['index'])
    except (ValueError, KeyError, TypeError):
        raise ConfigError('distribution multi_worker needs TF_CONFIG, e.g. {"cluster": {"worker": '
                          '["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}'
                          ) from None
    chief = task_type == 'chief' or (task_type == 'worker' and index == 0
                                     and 'chief' not in cluster)
    return cluster, task_type, index, chief


def check_devices(config):
    """Refuses GPU-only settings (mixed_float16, GPU devices) where no CUDA GPU is visible,
    instead of training on the CPU under a log that claims GPUs, and bfloat16 with several
    workers (the oneDNN rewrite makes bfloat16 kernels the worker runtime does not have)."""
    if config.precision == 'mixed_bfloat16' and config.distribution == 'multi_worker':
        raise ConfigError('precision mixed_bfloat16 does not run with distribution '
                          'multi_worker (the workers lack its bfloat16 kernels); use precision '
                          'float32 or auto')
    gpus = [d for d in config.devices if 'gpu' in d.lower()]
    if (config.precision == 'mixed_float16' or gpus) and not (
            tensorflow.config.list_physical_devices('GPU')):
        what = ('precision mixed_float16' if config.precision == 'mixed_float16'
                else 'devices %s' % ','.join(gpus))
        raise ConfigError('%s needs a CUDA GPU, and TensorFlow sees none here; on CPUs use '
                          'precision mixed_bfloat16 (or float32) and devices /cpu:0,/cpu:1'
                          % what)


def is_chief(config):
    """Whether this process writes the run's files (with several workers, the chief alone)."""
    return config.distribution != 'multi_worker' or cluster_task()[3]


def make_strategy(config):
    """The tf.distribute strategy of the config, or None for plain single-device training.

    'mirrored' replicates the model on `devices` (default: every local GPU, else the CPU) and
    all-reduces gradients; 'multi_worker' does the same across the machines of TF_CONFIG
    (collective all-reduce). The global batch (`batch_size`) is split across the replicas.
    """
    if config.distribution == 'none':
        return None
    if config.distribution == 'multi_worker':
        cluster_task()  # validates TF_CONFIG
        strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.MirroredStrategy(
            list(config.devices) or None, cross_device_ops=tf.distribute.ReductionToOneDevice())
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError('batch_size %d (the global batch) must be a multiple of the %d '
                          'replicas' % (config.batch_size, strategy.num_replicas_in_sync))
    return strategy


def session_target(config, strategy, proto):
    """(session target, ConfigProto): '' locally; with several workers, this worker's server,
    which the collective all-reduce needs, created with the strategy's session settings (else
    the first session run hangs)."""
    if config.distribution != 'multi_worker':
        return '', proto
    proto = strategy.update_config_proto(proto)
    cluster, task_type, task_index, _ = cluster_task()
    server = tf.distribute.Server(tf.train.ClusterSpec(cluster), job_name=task_type,
                                  task_index=task_index, config=proto, start=True)
    return server.target, proto
