"""The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks",
WACV 2017; fastai's lr_find): a short run from the run's starting weights in which the rate
grows exponentially from `min_lr` to `max_lr`, stopped once the loss diverges.

    result = find_learning_rate(config, 1e-6, 1e-1, 200, log)  # writes lr_find.{png,json}

It trains a graph of its own in memory and writes only LR_FIND_JSON and LR_FIND_PLOT in
config.output_dir: no checkpoint, config.yaml or history that a later training would resume
from or be mixed with.
"""
import dataclasses
import json
import math
import os
import time

import numpy as np
import tensorflow.compat.v1 as tf

from utils.data.pipeline import check_dataset
from utils.errors import ConfigError, TrainingError
from utils.fileio import atomic_path, atomic_write_text
from utils.runtime import resolve_precision, session_config
from utils.training.graph import build_training_graph
from utils.training.initialization import make_init_fn
from utils.training.monitoring import smoothed
from utils.training.optimization import session_rewrites

LR_FIND_JSON = 'lr_find.json'
LR_FIND_PLOT = 'lr_find.png'
MIN_STEPS = 20  # fewer rates than this cannot show a curve
DIVERGENCE_FACTOR = 4.0  # stop when the running loss average is this many times its lowest
LOSS_SMOOTHING = 0.9  # weight of the past in the running average that watches for divergence
# The curve is judged after the run on a centred moving average (no lag: a running average
# lags ~1/(1 - weight) steps, a factor of 2 in rate on a 100-step test) over this share of it.
WINDOW_SHARE = 0.1


def check_range(min_lr, max_lr, steps):
    """ConfigError naming the flag for a range no test can run."""
    for flag, value in (('--find_lr_min', min_lr), ('--find_lr_max', max_lr)):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError('%s must be a positive finite rate, got %r' % (flag, value))
    if min_lr >= max_lr:
        raise ConfigError('--find_lr_min %g must be below --find_lr_max %g' % (min_lr, max_lr))
    if steps < MIN_STEPS:
        raise ConfigError('--find_lr_steps %d is too few to show a curve: give at least %d '
                          '(100-300 is typical)' % (steps, MIN_STEPS))


def range_config(config, min_lr, max_lr, steps):
    """`config` with the exponential range as its schedule: the 'step' schedule multiplying
    the rate by (max/min)^(1/steps) at every step, without warm-up, stages or validation."""
    return dataclasses.replace(
        config, learning_rate=min_lr, lr_schedule='step', lr_decay_steps=1,
        lr_decay_rate=(max_lr / min_lr) ** (1.0 / steps), warmup_steps=0, max_steps=steps,
        stage1_steps=0, dataset_val='')


def centred_average(values, share=WINDOW_SHARE):
    """Moving average over an odd window of about `share` of the values, centred (no lag),
    narrower at the ends."""
    values = np.asarray(values, np.float64)
    window = max(3, int(share * len(values)) // 2 * 2 + 1)
    kernel = np.ones(window)
    return (np.convolve(values, kernel, 'same')
            / np.convolve(np.ones_like(values), kernel, 'same'))


def valley(curve):
    """fastai's `valley` rule on a smoothed curve: the middle of its longest descending stretch
    (the longest run of ever lower losses, as a longest decreasing subsequence), an index."""
    n = len(curve)
    length, end = [1] * n, 0
    for i in range(1, n):
        for j in range(i):
            if curve[i] < curve[j] and length[i] < length[j] + 1:
                length[i] = length[j] + 1
        if length[i] > length[end]:
            end = i
    start = end - length[end] + 1
    return start + (end - start) // 2


def suggest(rates, losses):
    """(suggested rate, rate of the lowest smoothed loss, rate of the steepest descent) of the
    test's curve, the loss smoothed by centred_average; the suggestion is `valley`'s."""
    curve = centred_average(losses)
    lowest = int(np.argmin(curve))
    slopes = np.gradient(curve, np.log(rates))
    steepest = int(np.argmin(slopes[:lowest + 1]))
    return rates[valley(curve)], rates[lowest], rates[steepest]


def find_learning_rate(config, min_lr, max_lr, steps, log=print):
    """Runs the range test of `config` (its data, network, optimizer, starting checkpoint) and
    writes LR_FIND_JSON and LR_FIND_PLOT in config.output_dir; returns the JSON's dict."""
    check_range(min_lr, max_lr, steps)
    if not config.output_dir or not config.dataset_train:
        raise ConfigError('output_dir and dataset_train are required')
    precision, _ = resolve_precision(config.precision, config.distribution)
    config = dataclasses.replace(range_config(config, min_lr, max_lr, steps),
                                 precision=precision, distribution='none')
    check_dataset(config.dataset_train, config.num_classes, log)
    os.makedirs(config.output_dir, exist_ok=True)
    rates, losses, stopped = run_range(config, steps, log)
    if len(losses) < 3:
        raise TrainingError('the loss diverged within %d steps of the range test, from '
                            '--find_lr_min %g: start it lower' % (len(losses), min_lr))
    suggested, lowest, steepest = suggest(rates, losses)
    result = {'suggested_learning_rate': suggested, 'lowest_loss_learning_rate': lowest,
              'steepest_descent_learning_rate': steepest, 'min_lr': min_lr, 'max_lr': max_lr,
              'steps_planned': steps, 'steps_run': len(losses), 'stopped': stopped,
              'optimizer': config.optimizer, 'batch_size': config.batch_size,
              'crop_size': list(config.crop_size), 'precision': precision,
              'rule': 'the middle of the longest descent of the smoothed loss (fastai valley)',
              'learning_rates': rates, 'losses': losses}
    atomic_write_text(os.path.join(config.output_dir, LR_FIND_JSON),
                      json.dumps(result, indent=1))
    plot_range_test(os.path.join(config.output_dir, LR_FIND_PLOT), result)
    return result


def run_range(config, steps, log):
    """(rates, losses, why it stopped) of the range test's steps."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(config.seed)
        ops = build_training_graph(config, log)
        init_fn = (make_init_fn(config.checkpoint_path, tf.model_variables(),
                                config.checkpoint_exclude_scopes, log)
                   if config.checkpoint_path else None)
    rates, losses, stopped, start = [], [], 'reached --find_lr_max', time.time()
    proto = session_rewrites(session_config(config.devices), config.precision)
    with tf.Session(graph=graph, config=proto) as session:
        session.run(tf.global_variables_initializer())
        if init_fn:
            init_fn(session)
        best = float('inf')
        for step in range(steps):
            rate, loss, _ = session.run([ops.learning_rate, ops.loss['all'],
                                         ops.next_step['all']])
            if not math.isfinite(loss):
                stopped = 'loss became %s at rate %.3g' % (float(loss), rate)
                break
            rates.append(float(rate))
            losses.append(float(loss))
            average = smoothed(losses, LOSS_SMOOTHING)[-1]
            best = min(best, average)
            if step % 10 == 0:
                log('lr_find step %d/%d: rate %.3g, loss %.4f (smoothed %.4f), %.0f s'
                    % (step, steps, rate, loss, average, time.time() - start))
            if step >= MIN_STEPS // 2 and average > DIVERGENCE_FACTOR * best:
                stopped = ('the smoothed loss passed %g times its lowest at rate %.3g'
                           % (DIVERGENCE_FACTOR, rate))
                break
    return rates, losses, stopped


def plot_range_test(path, result):
    """Writes the PNG: loss (raw and smoothed) against the rate on a log axis, the suggestion
    marked."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rates, losses = result['learning_rates'], result['losses']
    fig, axis = plt.subplots(figsize=(7, 4.2))
    axis.plot(rates, losses, color='tab:blue', lw=0.8, alpha=0.35, label='loss')
    axis.plot(rates, centred_average(losses), color='tab:blue', lw=2,
              label='loss, centred moving average')
    axis.axvline(result['suggested_learning_rate'], color='tab:green', ls='--',
                 label='suggested %.2g: middle of the longest descent'
                 % result['suggested_learning_rate'])
    axis.axvline(result['lowest_loss_learning_rate'], color='tab:red', ls=':',
                 label='lowest loss at %.2g' % result['lowest_loss_learning_rate'])
    axis.set_xscale('log')
    axis.set_xlabel('learning rate (%s, batch %d, %s crops)'
                    % (result['optimizer'], result['batch_size'],
                       'x'.join(map(str, result['crop_size']))))
    axis.set_ylabel('training loss')
    top = np.percentile(losses, 95) * 1.2
    axis.set_ylim(min(losses) * 0.9, max(top, min(losses) * 1.5))
    axis.grid(alpha=0.3, which='both')
    axis.legend(fontsize=8)
    axis.set_title('Learning-rate range test: %d steps, %s' % (result['steps_run'],
                                                               result['stopped']), fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp_path:
        fig.savefig(tmp_path, format='png', dpi=90)
    plt.close(fig)
