"""The training graph: input batches -> network -> loss -> optimiser steps, optionally
replicated by a tf.distribute strategy."""
import contextlib
import dataclasses
import json

import numpy as np
import tensorflow.compat.v1 as tf

from nets import build_network
from utils.data.pipeline import train_dataset
from utils.errors import ConfigError
from utils.training.losses import softmax_cross_entropy_ignore
from utils.training.optimization import (Optimizers, build_train_op, in_scopes,
                                         learning_rate)


def class_weights(config):
    """The configured class weights, or those of a converter report (median frequency)."""
    if not config.class_weights_report:
        return config.class_weights
    try:
        with open(config.class_weights_report) as f:
            weights = json.load(f)['median_frequency_weights']
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError('cannot read median_frequency_weights from class_weights_report %s '
                          '(%s); give a .report.json written by convert_fcn_dataset.py'
                          % (config.class_weights_report, e)) from None
    if len(weights) != config.num_classes:
        raise ConfigError('class_weights_report %s has %d weights for %d classes'
                          % (config.class_weights_report, len(weights), config.num_classes))
    return tuple(weights)


def trainable_variable_lists(config):
    """{'all': the variables that train, 'stage1': those of stage one (two-stage runs)}."""
    trainable = in_scopes(tf.trainable_variables(), config.trainable_scopes)
    if not trainable:
        raise ConfigError('trainable_scopes %s match no variable' % (config.trainable_scopes,))
    var_lists = {'all': trainable}
    if config.stage1_steps:
        var_lists['stage1'] = in_scopes(trainable, config.stage1_trainable_scopes)
        if not var_lists['stage1']:
            raise ConfigError('stage1_trainable_scopes %s match no trainable variable'
                              % (config.stage1_trainable_scopes,))
    return var_lists


def make_step_fn(config, weights, optimizers, global_step):
    """One replica's step on a batch: {train op name: (loss after the update, step after it)}."""
    def step_fn(batch):
        images, labels = batch
        logits, _ = build_network(images, config.num_classes, True,
                                  dropout_keep_prob=config.dropout_keep_prob,
                                  batch_norm_decay=config.batch_norm_decay,
                                  **config.network_args())
        loss = softmax_cross_entropy_ignore(logits, labels, config.num_classes, weights,
                                            config.loss_normalization,
                                            config.hard_pixel_fraction)
        total_loss = loss + tf.losses.get_regularization_loss()
        outputs = {}
        for name, variables in trainable_variable_lists(config).items():
            op = build_train_op(optimizers, total_loss, global_step, variables, config)
            with tf.control_dependencies([op]):
                outputs[name] = (tf.identity(loss), global_step.read_value())
        return outputs
    return step_fn


@dataclasses.dataclass(frozen=True)
class TrainOps:
    """The training graph's parts. `loss` and `next_step` map a train op's name ('all', and
    'stage1' in two-stage runs) to its loss after the update and the global step after it:
    running next_step[name] takes one step of that op."""
    learning_rate: tf.Tensor
    global_step: tf.Variable
    weights_finite: tf.Tensor  # bool scalar: every trainable weight is finite
    input_init: list  # ops to run once before the first step (a replicated iterator's)
    loss: dict
    next_step: dict


def build_training_graph(config, log, failures=None, strategy=None, dataset=None):
    """Builds data, model, loss and train ops in the default graph; returns its TrainOps.

    With a `strategy`, the model is replicated and each replica takes its share of the batch;
    the loss is then the mean over replicas. `dataset` (of (images, labels) batches) replaces
    the TFRecord pipeline, e.g. for benchmarks.
    """
    # 1. Data: endless augmented batches (the global batch).
    if dataset is None:
        dataset = train_dataset(config.dataset_train, config.crop_size, config.batch_size,
                                config.min_scale, config.max_scale, config.random_flip,
                                config.photometric_jitter, config.shuffle_buffer,
                                config.deterministic, failures, config.num_classes)
    weights = class_weights(config)
    if weights:
        log('Class weights: %s' % ', '.join('%.3f' % w for w in weights))
    # 2. Step variables (global step, optimizer state) live under the strategy, if any.
    with strategy.scope() if strategy else contextlib.nullcontext():
        global_step = tf.train.get_or_create_global_step()
        lr = learning_rate(config, global_step)
        step_fn = make_step_fn(config, weights, Optimizers(config, lr), global_step)
        # 3. Model, loss and one train op per stage, on each replica.
        input_init = []
        if strategy is None:
            per_op = step_fn(tf.data.make_one_shot_iterator(dataset).get_next())
        else:
            iterator = strategy.make_dataset_iterator(dataset)
            input_init = [iterator.initializer]
            replicated = strategy.experimental_run(step_fn, iterator)
            per_op = {name: (strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None),
                             strategy.experimental_local_results(step)[0])
                      for name, (loss, step) in replicated.items()}
    trainable = trainable_variable_lists(config)['all']
    finite = tf.reduce_all([tf.reduce_all(tf.is_finite(v)) for v in trainable])
    return TrainOps(learning_rate=lr, global_step=global_step, weights_finite=finite,
                    input_init=input_init,
                    loss={name: loss for name, (loss, _) in per_op.items()},
                    next_step={name: step for name, (_, step) in per_op.items()})


# Ops whose outputs the backward pass keeps: convolutions, matrix products, pooling, ReLU.
KEPT_FOR_BACKWARD = ('Conv2D', 'DepthwiseConv2dNative', 'MatMul', 'BatchMatMulV2', 'MaxPool',
                     'Relu', 'Relu6')


def activation_bytes_lower_bound(graph, batch_size, bytes_per_value=4):
    """A lower bound of the memory one training step needs: the values of the activations the
    backward pass keeps (KEPT_FOR_BACKWARD ops outside the validation graph), at
    `bytes_per_value` (2 under bfloat16), with unknown batch dimensions at `batch_size`."""
    total = 0
    for op in graph.get_operations():
        if op.type not in KEPT_FOR_BACKWARD or 'gradients' in op.name.split('/'):
            continue
        for output in op.outputs:
            dims = output.shape.as_list() if output.shape.rank is not None else None
            if not dims or any(d is None for d in dims[1:]):
                continue
            total += (dims[0] or batch_size) * int(np.prod(dims[1:]))
    return total * bytes_per_value


def variable_bytes(graph):
    """Bytes of every variable of `graph` (weights, optimiser slots, step counters), and of
    one gradient per trainable weight, at their own types."""
    with graph.as_default():
        held = sum(v.shape.num_elements() * v.dtype.base_dtype.size
                   for v in tf.global_variables() if v.shape.is_fully_defined())
        gradients = sum(v.shape.num_elements() * v.dtype.base_dtype.size
                        for v in tf.trainable_variables() if v.shape.is_fully_defined())
    return held + gradients


def check_activation_memory(graph, config, available):
    """Refuses a training step that cannot fit the `available` memory (bytes; None: unknown),
    which would otherwise end in the kernel's out-of-memory kill or a crash inside oneDNN:
    the activations the backward pass keeps, plus the weights, their optimiser slots and
    gradients. Returns the activations' lower bound in bytes. Call it on the training graph
    before the validation graph is added."""
    need = activation_bytes_lower_bound(graph, config.batch_size,
                                        2 if config.precision == 'mixed_bfloat16' else 4)
    weights = variable_bytes(graph)
    if available is not None and weights > available:
        raise ConfigError('the model\'s weights, %s slots and gradients need %.1f GB, and this '
                          'machine has %.1f GB available: lower fc_depth (now %d) or the other '
                          'width settings' % (config.optimizer, weights / 2 ** 30,
                                              available / 2 ** 30, config.fc_depth))
    if available is not None and need + weights > available:
        raise ConfigError('batch_size %d at crop_size %dx%d keeps at least %.1f GB of '
                          'activations for the backward pass beside %.1f GB of weights and '
                          'optimiser state, and this machine has %.1f GB available: lower '
                          'batch_size or crop_size'
                          % (config.batch_size, config.crop_size[0], config.crop_size[1],
                             need / 2 ** 30, weights / 2 ** 30, available / 2 ** 30))
    return need
