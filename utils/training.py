"""The training job: data -> FCN -> loss -> optimiser -> init/resume -> loop with saves and
validations. `train(config)` reads top to bottom in the order the work happens.

Layout of an output directory:
    OUTPUT_DIR/config.yaml                the resolved config of the run
    OUTPUT_DIR/train/model.ckpt-STEP.*    checkpoints (a rerun resumes from the latest)
    OUTPUT_DIR/best/model.ckpt-STEP.*     the checkpoint with the best validation mIoU
    OUTPUT_DIR/eval/val_STEP[_K]_*.jpg    validation pictures per sample
    OUTPUT_DIR/eval/metrics.jsonl         one line of scores per validation
    OUTPUT_DIR/progress.png               training loss and validation mIoU over steps
    TensorBoard event files in train/ and eval/ (see utils/monitoring.py)
"""
import contextlib
import glob
import json
import math
import os
import re
import resource
import time

import tensorflow
import tensorflow.compat.v1 as tf

from nets import build_network
from utils.checkpoints import CheckpointError, make_init_fn
from utils.conversion import REPORT_SUFFIX
from utils.config import CONFIG_FILENAME, ConfigError, load_yaml, save_config
from utils.data import train_dataset
from utils.evaluation import build_eval_graph, run_validation
from utils.fileio import atomic_write_text
from utils.inference import TRAIN_SUBDIR, session_config
from utils.losses import softmax_cross_entropy_ignore
from utils.tfrecord import DecodeFailures, check_records, resolve_record_paths
from utils.monitoring import (HISTORY_FILENAME, PLOT_FILENAME, append_jsonl, image_summary,
                              plot_progress, read_jsonl, scalar_summary)
from utils.optimization import (build_optimizer, build_train_op, in_scopes, learning_rate,
                                session_rewrites)

EVAL_SUBDIR = 'eval'
BEST_SUBDIR = 'best'
CHECKPOINT_BASENAME = 'model.ckpt'
METRICS_FILENAME = 'metrics.jsonl'
BEST_FILENAME = 'best.json'
# Keys that change the network's variables: a run cannot resume under different values.
MODEL_KEYS = ('model', 'num_classes', 'fc_depth', 'depth_multiplier', 'final_endpoint',
              'classifier_kernel', 'classifier_depth')


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


def format_scores(result):
    text = 'mIoU %.4f, pixel accuracy %.4f' % (result['mean_iou'], result['pixel_accuracy'])
    if 'crf' in result:
        text += ' | with CRF: mIoU %.4f, pixel accuracy %.4f' % (result['crf']['mean_iou'],
                                                                 result['crf']['pixel_accuracy'])
    return text


def format_duration(seconds):
    seconds = int(max(seconds, 0))
    return '%d:%02d:%02d' % (seconds // 3600, seconds // 60 % 60, seconds % 60)


def check_dataset(record_spec, num_classes):
    """Fails early, naming the file, on records that are missing, empty, of another schema or
    of another number of classes (from the converter's report, and the first records)."""
    paths = resolve_record_paths(record_spec)
    for path in paths:
        report = re.sub(r'-\d{5}-of-\d{5}$', '', path) + REPORT_SUFFIX
        if os.path.isfile(report):
            with open(report) as f:
                written_for = json.load(f).get('num_classes')
            if written_for is not None and written_for != num_classes:
                raise ConfigError('%s was converted for %d classes but num_classes is %d; use '
                                  'the matching config' % (path, written_for, num_classes))
    try:
        check_records(paths, num_classes)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def checkpoint_candidates(train_dir):
    """Checkpoint prefixes of a run, newest step first: those whose index file is on disk,
    whatever the state file says (it may be stale or torn after a kill)."""
    prefixes = [p[:-len('.index')] for p in
                glob.glob(os.path.join(train_dir, CHECKPOINT_BASENAME + '-*.index'))]
    prefixes = [p for p in prefixes if re.search(r'-(\d+)$', p)]
    return sorted(prefixes, key=lambda p: int(p.rsplit('-', 1)[1]), reverse=True)


def current_rss_mb():
    """Current resident memory of this process in MB (Linux), else the peak."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def build_training_graph(config, log, failures=None, strategy=None, dataset=None):
    """Builds data, model, loss and train ops in the default graph; returns the tensors.

    With a `strategy`, the model is replicated and each replica takes its share of the batch;
    'loss' is then the mean over replicas. `dataset` (of (images, labels) batches) replaces
    the TFRecord pipeline, e.g. for benchmarks.
    """
    # 1. Data: endless augmented batches (the global batch).
    if dataset is None:
        dataset = train_dataset(config.dataset_train, config.crop_size, config.batch_size,
                                config.min_scale, config.max_scale, config.random_flip,
                                config.photometric_jitter, config.shuffle_buffer,
                                config.deterministic, failures)
    weights = class_weights(config)
    if weights:
        log('Class weights: %s' % ', '.join('%.3f' % w for w in weights))

    def step_fn(batch):
        """One replica's step: {train op name: (loss after the update, step after it)}."""
        images, labels = batch
        # 2. Model and loss.
        logits, _ = build_network(images, config.num_classes, True,
                                  dropout_keep_prob=config.dropout_keep_prob,
                                  **config.network_args())
        loss = softmax_cross_entropy_ignore(logits, labels, config.num_classes, weights,
                                            config.loss_normalization,
                                            config.hard_pixel_fraction)
        total_loss = loss + tf.losses.get_regularization_loss()
        # 3. Optimiser over the trainable scopes; stage one trains only the new head layers.
        trainable = in_scopes(tf.trainable_variables(), config.trainable_scopes)
        if not trainable:
            raise ConfigError('trainable_scopes %s match no variable'
                              % (config.trainable_scopes,))
        var_lists = {'all': trainable}
        if config.stage1_steps:
            var_lists['stage1'] = in_scopes(trainable, config.stage1_trainable_scopes)
            if not var_lists['stage1']:
                raise ConfigError('stage1_trainable_scopes %s match no trainable variable'
                                  % (config.stage1_trainable_scopes,))
        outputs = {}
        for name, variables in var_lists.items():
            op = build_train_op(optimizer, total_loss, global_step, variables, config)
            with tf.control_dependencies([op]):
                outputs[name] = (tf.identity(loss), global_step.read_value())
        return outputs

    # Variables (global step, optimizer state) are created under the strategy, if any.
    with strategy.scope() if strategy else contextlib.nullcontext():
        global_step = tf.train.get_or_create_global_step()
        lr = learning_rate(config, global_step)
        optimizer = build_optimizer(config, lr)
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
    trainable = in_scopes(tf.trainable_variables(), config.trainable_scopes)
    finite = tf.reduce_all([tf.reduce_all(tf.is_finite(v)) for v in trainable])
    return {'learning_rate': lr, 'global_step': global_step, 'weights_finite': finite,
            'input_init': input_init,
            'loss': {name: loss for name, (loss, _) in per_op.items()},
            'next_step': {name: step for name, (_, step) in per_op.items()}}


def train(config, log=print, should_stop=lambda: False):
    """Trains config.model on config.dataset_train; returns a summary dict of the run.

    `should_stop()` is polled after every step (train.py sets it on SIGINT/SIGTERM): the run
    then saves a checkpoint and returns with summary['stopped'] True.
    """
    if not config.output_dir:
        raise ConfigError('output_dir is required')
    if not config.dataset_train:
        raise ConfigError('dataset_train is required')
    check_output_dir(config)
    check_dataset(config.dataset_train, config.num_classes)
    if config.dataset_val:
        check_dataset(config.dataset_val, config.num_classes)
    train_dir = os.path.join(config.output_dir, TRAIN_SUBDIR)
    eval_dir = os.path.join(config.output_dir, EVAL_SUBDIR)
    best_dir = os.path.join(config.output_dir, BEST_SUBDIR)
    # With several workers, the chief alone writes (config, checkpoints, pictures, logs).
    chief = config.distribution != 'multi_worker' or cluster_task()[3]
    if chief:
        for directory in (train_dir, eval_dir, best_dir):
            os.makedirs(directory, exist_ok=True)
        log('Config saved to %s' % save_config(config, config.output_dir))

    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(config.seed)
        if config.deterministic:  # process-wide: deterministic kernels from here on
            tensorflow.config.experimental.enable_op_determinism()
        failures = DecodeFailures()
        strategy = make_strategy(config)
        if strategy is not None:
            log('Training on %d replicas (%s), %d images each per step'
                % (strategy.num_replicas_in_sync, ', '.join(strategy.extended.worker_devices),
                   config.batch_size // strategy.num_replicas_in_sync))
        tensors = build_training_graph(config, log, failures, strategy)
        global_step = tensors['global_step']
        # 4. Validation graph sharing the weights.
        eval_graph = (build_eval_graph(config, config.dataset_val, config.num_eval_images,
                                       failures=failures)
                      if config.dataset_val and chief else None)
        saver = tf.train.Saver(max_to_keep=config.keep_checkpoints)
        best_saver = tf.train.Saver(max_to_keep=1)
        # 5. Initialisation: resume from our own newest usable checkpoint (optimizer state it
        # lacks, e.g. after changing the optimizer, starts fresh), else the pretrained one.
        candidates = checkpoint_candidates(train_dir)
        required = [v.op.name for v in tf.model_variables()] + [global_step.op.name]
        init_fn = None
        if not candidates and config.checkpoint_path:
            init_fn = make_init_fn(config.checkpoint_path, tf.model_variables(),
                                   config.checkpoint_exclude_scopes, log)

    proto = session_rewrites(session_config(config.devices), config.precision)
    target = ''
    if config.distribution == 'multi_worker':
        # The collective all-reduce runs in this worker's server, which needs the strategy's
        # session settings.
        proto = strategy.update_config_proto(proto)
        cluster, task_type, task_index, _ = cluster_task()
        target = tf.distribute.Server(tf.train.ClusterSpec(cluster), job_name=task_type,
                                      task_index=task_index, config=proto, start=True).target
    with tf.Session(target, graph=graph, config=proto) as session:
        latest = None
        for candidate in candidates:
            try:
                session.run(tf.global_variables_initializer())  # also undoes a failed restore
                with graph.as_default():
                    make_init_fn(candidate, tf.global_variables(), (), lambda *_: None,
                                 required)(session)
                latest = candidate
                break
            except (CheckpointError, tf.errors.OpError) as e:
                log('Checkpoint %s is unusable (%s); trying an older one'
                    % (candidate, str(e).split('\n')[0]))
        if candidates and latest is None:
            raise TrainingError('none of the %d checkpoints in %s can be restored; move them '
                                'away to start again' % (len(candidates), train_dir))
        if latest:
            saver.recover_last_checkpoints(list(reversed(candidates)))
            log('Resumed from %s at step %d' % (latest, session.run(global_step)))
        else:
            session.run(tf.global_variables_initializer())
            if init_fn:
                init_fn(session)
            else:
                log('No checkpoint_path: training from randomly initialised weights')
        session.run(tensors['input_init'])
        train_writer = tf.summary.FileWriter(train_dir) if chief else None
        eval_writer = tf.summary.FileWriter(eval_dir) if chief else None
        best_path = os.path.join(eval_dir, BEST_FILENAME)
        best = {'mean_iou': -1.0}
        if os.path.exists(best_path):
            with open(best_path) as f:
                best = json.load(f)
        state = {'last_save_time': time.time()}

        def save(step):
            if not chief:
                return None
            if not session.run(tensors['weights_finite']):
                raise TrainingError('weights became non-finite by step %d; not saving them, the '
                                    'last good checkpoint is in %s (lower the learning rate?)'
                                    % (step, train_dir))
            prefix = os.path.join(train_dir, CHECKPOINT_BASENAME)
            try:
                path = saver.save(session, prefix, global_step=step)
            except (tf.errors.OpError, OSError) as e:
                raise TrainingError('cannot write checkpoint %s-%d (%s); free some space or '
                                    'choose another --output_dir: the earlier checkpoints are '
                                    'intact' % (prefix, step, str(e).split('\n')[0])) from None
            state['last_save_time'] = time.time()
            log('Model saved in file: %s' % path)
            return path

        def validate(step):
            try:
                result = run_validation(session, eval_graph, config, step, eval_dir, log)
            except OSError as e:
                raise TrainingError('cannot write validation pictures to %s (%s)'
                                    % (eval_dir, e)) from None
            sample = result.pop('sample_pictures', {})
            append_jsonl(os.path.join(eval_dir, METRICS_FILENAME),
                         {'step': int(step), **{k: v for k, v in result.items() if k != 'jpegs'}})
            log('step %d validation on %d images: %s' % (step, result['num_images'],
                                                         format_scores(result)))
            values = {'validation/mean_iou': result['mean_iou'],
                      'validation/pixel_accuracy': result['pixel_accuracy']}
            if 'crf' in result:
                values['validation/mean_iou_crf'] = result['crf']['mean_iou']
            names = config.class_names or ['class_%d' % i for i in range(config.num_classes)]
            for name, iou in zip(names, result['per_class_iou']):
                values['validation_iou/%s' % name] = iou
            eval_writer.add_summary(scalar_summary(values), step)
            for kind, picture in sample.items():
                eval_writer.add_summary(image_summary('sample/%s' % kind, picture), step)
            eval_writer.flush()
            if result['mean_iou'] > best['mean_iou']:
                best.update(mean_iou=result['mean_iou'], step=int(step),
                            checkpoint=best_saver.save(session, os.path.join(
                                best_dir, CHECKPOINT_BASENAME), global_step=step))
                atomic_write_text(best_path, json.dumps(best, indent=2))
                log('New best validation mIoU %.4f: %s' % (best['mean_iou'], best['checkpoint']))
            plot_progress(os.path.join(config.output_dir, PLOT_FILENAME),
                          read_jsonl(os.path.join(train_dir, HISTORY_FILENAME)),
                          read_jsonl(os.path.join(eval_dir, METRICS_FILENAME)))
            return result

        # 6. Loop.
        step = int(session.run(global_step))
        start_step = step
        last_saved, last_result = None, None
        saved_step, validated_step = (step if latest else None), None
        window_steps, window_seconds, run_start = 0, 0.0, time.time()
        stopped = False
        try:
            while step < config.max_steps:
                stage = 'stage1' if step < config.stage1_steps else 'all'
                if stage == 'stage1' and step == start_step:
                    log('Stage one: training only %s until step %d'
                        % (', '.join(config.stage1_trainable_scopes), config.stage1_steps))
                elif config.stage1_steps and step == config.stage1_steps:
                    log('Stage two: training all trainable variables from step %d' % step)
                start = time.time()
                loss_value, lr_value, step = session.run(
                    [tensors['loss'][stage], tensors['learning_rate'],
                     tensors['next_step'][stage]])
                step = int(step)
                window_seconds += time.time() - start
                window_steps += 1
                if not math.isfinite(loss_value):
                    raise TrainingError('loss became %r at step %d; stopped without saving, the '
                                        'last good checkpoint is in %s (lower the learning rate?)'
                                        % (loss_value, step, train_dir))
                if step % config.log_every == 0 or step == config.max_steps:
                    rate = window_steps * config.batch_size / window_seconds
                    per_step = (time.time() - run_start) / (step - start_step)
                    log('step %d Current Loss: %.4f' % (step, loss_value))
                    log('[%.2f] imgs/s  lr %.3g  %d/%d steps, %s remaining'
                        % (rate, lr_value, step, config.max_steps,
                           format_duration(per_step * (config.max_steps - step))))
                    if failures.count:
                        log('skipped %d undecodable record read(s) so far (%d distinct, last: %s)'
                            % (failures.count, len(set(failures.names)), failures.names[-1]))
                    if chief:
                        append_jsonl(os.path.join(train_dir, HISTORY_FILENAME),
                                     {'step': step, 'loss': float(loss_value),
                                      'learning_rate': float(lr_value), 'images_per_s': rate,
                                      'rss_mb': round(current_rss_mb(), 1)})
                        train_writer.add_summary(scalar_summary(
                            {'loss': loss_value, 'learning_rate': lr_value,
                             'images_per_s': rate}), step)
                    window_steps, window_seconds = 0, 0.0
                if step % config.save_every == 0 or (
                        config.save_every_seconds
                        and time.time() - state['last_save_time'] >= config.save_every_seconds):
                    last_saved, saved_step = save(step), step
                if eval_graph and step % config.eval_every == 0:
                    last_result, validated_step = validate(step), step
                if should_stop():
                    stopped = True
                    log('Stop requested at step %d' % step)
                    break
        except KeyboardInterrupt:
            log('Interrupted at step %d: saving before exit' % step)
            save(step)
            raise
        # 7. Final save (and validation unless stopped early).
        if saved_step != step:
            last_saved = save(step)
        if eval_graph and validated_step != step and not stopped:
            last_result = validate(step)
        if chief:
            train_writer.close()
            eval_writer.close()
    return {'step': step, 'checkpoint': last_saved, 'eval_dir': eval_dir,
            'validation': last_result, 'stopped': stopped,
            'best': best if best['mean_iou'] >= 0 else None}
