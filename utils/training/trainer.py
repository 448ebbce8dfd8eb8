"""The training job. `train(config)` reads top to bottom in the order the work happens:
prepare the run directory, build the graph, open the session, restore or initialise, loop
(step, log, maybe save, maybe validate), final save and validation, summary.

    summary = train(resolve_config('configs/camvid_fcn8s.yaml', {'output_dir': 'runs/camvid'}))

What goes where in the run directory: utils/rundir.py.
"""

import contextlib
import dataclasses
import threading
import typing

import tensorflow
import tensorflow.compat.v1 as tf

from nets import accepted_args
from utils.config import save_config
from utils.crf import CrfPool
from utils.data.pipeline import check_dataset
from utils.data.records import DecodeFailures
from utils.errors import CheckpointError, ConfigError, TrainingError, error_reason
from utils.evaluation.scoring import build_eval_graph
from utils.rundir import RunDir
from utils.runtime import available_memory_bytes, resolve_precision, session_config
from utils.training.distribution import (check_devices, is_chief, make_strategy,
                                         session_target)
from utils.training.graph import TrainOps, build_training_graph, check_activation_memory
from utils.training.initialization import (fresh_moving_averages, make_init_fn,
                                           moving_average_warning, suited_batch_norm_decay)
from utils.training.loop import TrainingLoop
from utils.training.optimization import session_rewrites

SLOW_CLOSE_SECONDS = 3.0  # a session close that takes longer is said in the log


def run_summary(config):
    """The first line of a training's log: what trains on what, for how long, in a line a
    reader takes in (the whole config is saved as OUTPUT_DIR/config.yaml)."""
    return ('Training %s on %d classes%s: %d steps of batch %d, crops %dx%d, precision %s'
            % (config.network_description(), config.num_classes,
               ' (%s)' % config.dataset_name if config.dataset_name else '', config.max_steps,
               config.batch_size, config.crop_size[0], config.crop_size[1], config.precision))


def prepare_run(config, run, log):
    """Checks the config's inputs and the run directory; the chief makes it, clears what
    killed saves left there and saves the config. Returns the number of readable validation
    records (0 without dataset_val)."""
    run.check_resumable(config)
    check_dataset(config.dataset_train, config.num_classes, log)
    val_files = check_dataset(config.dataset_val, config.num_classes, log) if (
        config.dataset_val) else []
    if is_chief(config):
        run.make()
        count, size = run.remove_checkpoint_temporaries()
        if count:
            log('Removed %d temporary file(s) of interrupted checkpoint saves (%.1f MB)'
                % (count, size / 2 ** 20))
        log('Full config (every key; train.py --help explains each): %s'
            % save_config(config, run.config_path))
    return sum(f.count for f in val_files)


@dataclasses.dataclass
class TrainingGraph:
    """What build_graph makes: the train ops, validation (None: no validation here), the
    savers, the decode-failure counter, and how the run starts: `candidates` (the run's own
    checkpoints, newest first), `required` (the variables a checkpoint must hold to resume
    from it) and `init_fn` (the pretrained initialisation; None when the run resumes or has
    no checkpoint_path)."""
    ops: TrainOps
    eval: typing.Optional[dict]
    saver: tf.train.Saver
    best_saver: tf.train.Saver
    failures: DecodeFailures
    candidates: list
    required: list
    init_fn: typing.Optional[typing.Callable]


def build_graph(config, run, log, num_val_records=None):
    """Training and validation graph, savers and the pretrained init in a new graph.

    Returns (graph, strategy, TrainingGraph).
    """
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
        ops = build_training_graph(config, log, failures, strategy)
        if not tensorflow.config.list_physical_devices('GPU'):  # a GPU's own memory: per step
            need = check_activation_memory(graph, config, available_memory_bytes())
            log('Activations kept for the backward pass: at least %.2f GB per step'
                % (need / 2 ** 30))
        # Validation shares the weights; only the chief validates.
        validation = (build_eval_graph(config, config.dataset_val, config.num_eval_images,
                                       failures=failures, num_records=num_val_records)
                      if config.dataset_val and is_chief(config) else None)
        # A run resumes from its own newest usable checkpoint (optimizer state it lacks, e.g.
        # after changing the optimizer, starts fresh), else starts from the pretrained one.
        candidates = run.checkpoint_candidates()
        init_fn = None
        if not candidates and config.checkpoint_path:
            init_fn = make_init_fn(config.checkpoint_path, tf.model_variables(),
                                   config.checkpoint_exclude_scopes, log)
        if not candidates:
            warning = moving_average_warning(fresh_moving_averages(init_fn),
                                             config.batch_norm_decay, config.max_steps)
            if warning:
                log(warning)
        parts = TrainingGraph(
            ops=ops, eval=validation,
            # Relative paths in the `checkpoint` state files: a copied or moved run finds its
            # own.
            saver=tf.train.Saver(max_to_keep=config.keep_checkpoints, save_relative_paths=True),
            # The best checkpoint is for evaluation and deployment: no optimiser state (a third
            # of the size with Adam).
            best_saver=tf.train.Saver(tf.model_variables() + [ops.global_step], max_to_keep=1,
                                      save_relative_paths=True),
            failures=failures, candidates=candidates,
            required=[v.op.name for v in tf.model_variables()] + [ops.global_step.op.name],
            init_fn=init_fn)
    return graph, strategy, parts


def restore_or_initialise(session, graph, parts, run, log):
    """Restores the newest loadable checkpoint of the run, else initialises (pretrained
    weights where given). Returns the checkpoint resumed from, or None."""
    candidates, reason = parts.candidates, None
    for candidate in candidates:
        try:
            session.run(tf.global_variables_initializer())  # also undoes a failed restore
            with graph.as_default():
                make_init_fn(candidate, tf.global_variables(), (), lambda *_: None,
                             parts.required)(session)
        except (CheckpointError, tf.errors.OpError) as e:
            reason = error_reason(e)
            log('Checkpoint %s is unusable (%s); trying an older one' % (candidate, reason))
            continue
        parts.saver.recover_last_checkpoints(list(reversed(candidates)))
        log('Resumed from %s at step %d' % (candidate, session.run(parts.ops.global_step)))
        return candidate
    if candidates:
        raise TrainingError('none of the %d checkpoints in %s can be restored (the oldest: %s); '
                            'move them away to start again' % (len(candidates), run.train_dir,
                                                               reason))
    session.run(tf.global_variables_initializer())
    if parts.init_fn:
        parts.init_fn(session)
    else:
        log('No checkpoint_path: training from randomly initialised weights')
    return None


def train(config, log=print, should_stop=lambda: False):
    """Trains config.model on config.dataset_train; returns a summary dict of the run:
    'step', 'checkpoint' (the last saved), 'eval_dir', 'validation' (the last scores),
    'stopped', 'best' ({'mean_iou', 'step', 'checkpoint'} or None).

    `should_stop()` is polled after every step (train.py sets it on SIGINT/SIGTERM): the run
    then saves a checkpoint and returns with summary['stopped'] True.
    """
    # 1. Prepare the run directory, held by this job alone (the chief's, with several).
    if not config.output_dir or not config.dataset_train:
        raise ConfigError('output_dir and dataset_train are required')
    check_devices(config)
    precision, why = resolve_precision(config.precision, config.distribution)
    log('Precision: %s (%s)' % (precision, why))
    decay, why = suited_batch_norm_decay(config, 'batch_norm_decay' in accepted_args(
        config.model))
    if why:
        log(why)
    config = dataclasses.replace(config, precision=precision, batch_norm_decay=decay)
    run = RunDir(config.output_dir)
    with run.lock(log) if is_chief(config) else contextlib.nullcontext():
        num_val_records = prepare_run(config, run, log)
        # 2. Build the graph: data, model, loss, train ops, validation, savers.
        graph, strategy, parts = build_graph(config, run, log, num_val_records)
        # 3.-6. Session, restore or initialise, loop, final save and validation.
        return run_session(config, run, graph, strategy, parts, log, should_stop)


@contextlib.contextmanager
def closing_session(session, log, seconds=SLOW_CLOSE_SECONDS):
    """The session for the block, closed after it; a close that takes longer than `seconds`
    is said in a line, so that the end of a run does not go silent (seen taking 14 and 57 s
    inside TensorFlow at the end of 600-step demo runs, 0.1 s in others)."""
    try:
        with session.graph.as_default(), session.as_default():  # as `with tf.Session()` does
            yield session
    finally:
        timer = threading.Timer(seconds, log, ('Closing the session (its threads are '
                                               'stopping)...',))
        timer.daemon = True
        timer.start()
        try:
            session.close()
        finally:
            timer.cancel()


def run_session(config, run, graph, strategy, parts, log, should_stop):
    """Opens the session (with several workers, through this worker's server), restores or
    initialises, runs the loop and the final save and validation; returns the summary."""
    target, proto = session_target(
        config, strategy, session_rewrites(session_config(config.devices), config.precision))
    validates_crf = parts.eval is not None and config.crf
    with CrfPool(workers=None if validates_crf else 1) as crf_pool, closing_session(
            tf.Session(target, graph=graph, config=proto), log) as session:  # the pool first
        # 4. Restore the run's newest usable checkpoint, or initialise.
        resumed = restore_or_initialise(session, graph, parts, run, log)
        session.run(parts.ops.input_init)
        loop = TrainingLoop(config, run, session, parts, is_chief(config), log, resumed,
                            crf_pool)
        if loop.step >= config.max_steps:
            log('Run %s is already at step %d (max_steps %d): nothing to train; raise '
                '--max_steps to go on' % (run.path, loop.step, config.max_steps))
        # 5. Loop: step, log, maybe save, maybe validate; a second Ctrl-C saves, then stops.
        try:
            while loop.step < config.max_steps and not loop.stopped:
                loop.train_step()
                loop.maybe_log()
                loop.maybe_save()
                loop.maybe_validate()
                loop.stopped = should_stop()
        except KeyboardInterrupt:
            log('Interrupted at step %d: saving before exit' % loop.step)
            loop.save()
            raise
        # 6. Final save, and validation unless stopped early.
        if loop.stopped:
            log('Stop requested at step %d' % loop.step)
        loop.finish()
    return loop.summary()
