"""The training job: data -> FCN -> loss -> optimiser -> init/resume -> loop with saves and
validations. `train(config)` reads top to bottom in the order the work happens.

Layout of an output directory:
    OUTPUT_DIR/config.yaml                the resolved config of the run
    OUTPUT_DIR/train/model.ckpt-STEP.*    checkpoints (a rerun resumes from the latest)
    OUTPUT_DIR/eval/val_STEP[_K]_*.jpg    validation pictures per sample
    OUTPUT_DIR/eval/metrics.jsonl         one line of scores per validation
"""
import json
import math
import os
import time

import tensorflow.compat.v1 as tf

from nets import build_network
from utils.checkpoints import make_init_fn
from utils.config import CONFIG_FILENAME, ConfigError, load_yaml, save_config
from utils.data import train_dataset
from utils.evaluation import build_eval_graph, run_validation
from utils.inference import TRAIN_SUBDIR, session_config
from utils.losses import softmax_cross_entropy_ignore

EVAL_SUBDIR = 'eval'
CHECKPOINT_BASENAME = 'model.ckpt'
METRICS_FILENAME = 'metrics.jsonl'
# Keys that change the network's variables: a run cannot resume under different values.
MODEL_KEYS = ('model', 'num_classes', 'fc_depth')


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss, incompatible output directory, ...)."""


def check_output_dir(config):
    """Refuses to resume a run of another network in the same output directory."""
    saved_path = os.path.join(config.output_dir, CONFIG_FILENAME)
    if not os.path.isfile(saved_path):
        return
    saved = load_yaml(saved_path)
    changed = ['%s: %r there, %r now' % (k, saved.get(k), getattr(config, k))
               for k in MODEL_KEYS if k in saved and saved[k] != getattr(config, k)]
    if changed:
        raise ConfigError('output dir %s holds a run of a different network (%s); use another '
                          '--output_dir' % (config.output_dir, '; '.join(changed)))


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


def build_optimizer(config):
    if config.optimizer == 'momentum':
        return tf.train.MomentumOptimizer(config.learning_rate, config.momentum)
    return tf.train.AdamOptimizer(config.learning_rate)


def format_scores(result):
    text = 'mIoU %.4f, pixel accuracy %.4f' % (result['mean_iou'], result['pixel_accuracy'])
    if 'crf' in result:
        text += ' | with CRF: mIoU %.4f, pixel accuracy %.4f' % (result['crf']['mean_iou'],
                                                                 result['crf']['pixel_accuracy'])
    return text


def append_metrics(path, step, result):
    record = {'step': int(step), **{k: v for k, v in result.items() if k != 'jpegs'}}
    with open(path, 'a') as f:
        f.write(json.dumps(record) + '\n')


def train(config, log=print):
    """Trains config.model on config.dataset_train; returns a summary dict of the run."""
    if not config.output_dir:
        raise ConfigError('output_dir is required')
    if not config.dataset_train:
        raise ConfigError('dataset_train is required')
    check_output_dir(config)
    train_dir = os.path.join(config.output_dir, TRAIN_SUBDIR)
    eval_dir = os.path.join(config.output_dir, EVAL_SUBDIR)
    os.makedirs(train_dir, exist_ok=True)
    os.makedirs(eval_dir, exist_ok=True)
    log('Config saved to %s' % save_config(config, config.output_dir))

    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(config.seed)
        # 1. Data: endless augmented batches.
        dataset = train_dataset(config.dataset_train, config.crop_size, config.batch_size,
                                config.min_scale, config.max_scale, config.random_flip,
                                config.shuffle_buffer)
        images, labels = tf.data.make_one_shot_iterator(dataset).get_next()
        # 2. Model and loss.
        logits, _ = build_network(images, config.num_classes, True, config.model,
                                  config.weight_decay, fc_depth=config.fc_depth,
                                  dropout_keep_prob=config.dropout_keep_prob)
        weights = class_weights(config)
        if weights:
            log('Class weights: %s' % ', '.join('%.3f' % w for w in weights))
        loss = softmax_cross_entropy_ignore(logits, labels, config.num_classes, weights)
        total_loss = loss + tf.losses.get_regularization_loss()
        # 3. Optimiser.
        global_step = tf.train.get_or_create_global_step()
        train_op = build_optimizer(config).minimize(total_loss, global_step=global_step)
        with tf.control_dependencies([train_op]):
            next_step = global_step.read_value()  # the step count after this update
        # 4. Validation graph sharing the weights.
        eval_graph = (build_eval_graph(config, config.dataset_val, config.num_eval_images)
                      if config.dataset_val else None)
        saver = tf.train.Saver(max_to_keep=config.keep_checkpoints)
        model_variables = tf.model_variables()
        init_fn = (make_init_fn(config.checkpoint_path, model_variables,
                                config.checkpoint_exclude_scopes, log)
                   if config.checkpoint_path else None)

    with tf.Session(graph=graph, config=session_config()) as session:
        # 5. Initialise: resume from our own checkpoint, else the pretrained one, else scratch.
        latest = tf.train.latest_checkpoint(train_dir)
        if latest:
            saver.restore(session, latest)
            log('Resumed from %s at step %d' % (latest, session.run(global_step)))
        else:
            session.run(tf.global_variables_initializer())
            if init_fn:
                init_fn(session)
            else:
                log('No checkpoint_path: training from randomly initialised weights')

        def save(step):
            path = saver.save(session, os.path.join(train_dir, CHECKPOINT_BASENAME),
                              global_step=step)
            log('Model saved in file: %s' % path)
            return path

        def validate(step):
            result = run_validation(session, eval_graph, config, step, eval_dir, log)
            append_metrics(os.path.join(eval_dir, METRICS_FILENAME), step, result)
            log('step %d validation on %d images: %s' % (step, result['num_images'],
                                                         format_scores(result)))
            return result

        # 6. Loop.
        step = int(session.run(global_step))
        last_saved, last_result = None, None
        saved_step, validated_step = (step if latest else None), None
        window_steps, train_seconds = 0, 0.0
        try:
            while step < config.max_steps:
                start = time.time()
                loss_value, step = session.run([loss, next_step])
                train_seconds += time.time() - start
                window_steps += 1
                if not math.isfinite(loss_value):
                    raise TrainingError('loss became %r at step %d; stopped without saving, the '
                                        'last good checkpoint is in %s (lower the learning rate?)'
                                        % (loss_value, step, train_dir))
                if step % config.log_every == 0 or step == config.max_steps:
                    log('step %d Current Loss: %.4f' % (step, loss_value))
                    log('[%.2f] imgs/s' % (window_steps * config.batch_size / train_seconds))
                    window_steps, train_seconds = 0, 0.0
                if step % config.save_every == 0:
                    last_saved, saved_step = save(step), step
                if eval_graph and step % config.eval_every == 0:
                    last_result, validated_step = validate(step), step
        except KeyboardInterrupt:
            log('Interrupted at step %d: saving before exit' % step)
            save(step)
            raise
        # 7. Final save and validation.
        if saved_step != step:
            last_saved = save(step)
        if eval_graph and validated_step != step:
            last_result = validate(step)
    return {'step': step, 'checkpoint': last_saved, 'eval_dir': eval_dir,
            'validation': last_result}
