"""Initialising a model from a checkpoint: a classification checkpoint, or the run's own.

The official tf-slim `vgg_16.ckpt` and partial checkpoints (e.g. a conv trunk without fc6-fc8)
both work: every model variable present in the checkpoint with the same shape is restored, the
rest are initialised fresh and listed. Shape mismatches are errors that name the variable.
"""
import math

import tensorflow.compat.v1 as tf

from nets.fcn import HEAD_SCOPE
from utils.errors import CheckpointError
from utils.rundir import resolve_checkpoint


def _excluded(name, exclude_scopes):
    return any(name == s.rstrip('/') or name.startswith(s.rstrip('/') + '/')
               for s in exclude_scopes)


def plan_restore(checkpoint_path, variables, exclude_scopes=()):
    """Matches model variables with a checkpoint's by name and shape.

    Returns (restore: {checkpoint name: variable}, fresh: [names initialised fresh],
    unused: [checkpoint names no model variable takes]).
    """
    try:
        shapes = tf.train.load_checkpoint(checkpoint_path).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError('cannot read checkpoint %s: %s' % (checkpoint_path, e)) from None
    restore, fresh, mismatched = {}, [], []
    for var in variables:
        name = var.op.name
        if _excluded(name, exclude_scopes) or name not in shapes:
            fresh.append(name)
        elif list(shapes[name]) != var.shape.as_list():
            mismatched.append('%s: checkpoint %s, model %s' % (name, shapes[name],
                                                               var.shape.as_list()))
        else:
            restore[name] = var
    if mismatched:
        raise CheckpointError('checkpoint %s does not fit the model (exclude these scopes with '
                              '--checkpoint_exclude_scopes, or check the model settings):\n  %s'
                              % (checkpoint_path, '\n  '.join(mismatched)))
    backbone = [name for name in restore if not name.startswith(HEAD_SCOPE + '/')]
    if not backbone and any(not v.op.name.startswith(HEAD_SCOPE + '/') for v in variables):
        raise CheckpointError('checkpoint %s holds none of the model\'s backbone variables (e.g. '
                              '%s); is it a checkpoint of another network?'
                              % (checkpoint_path, variables[0].op.name if variables else '-'))
    unused = sorted(n for n in shapes if n not in restore and not _excluded(n, exclude_scopes))
    return restore, fresh, unused


def make_init_fn(checkpoint_path, variables, exclude_scopes=(), log=print, required=()):
    """Returns init_fn(session) that restores what the checkpoint has, after logging the plan.

    Call it after the global variables initialiser, so that unmatched variables keep their
    fresh initial values. Variables named in `required` must be in the checkpoint.
    """
    checkpoint_path = resolve_checkpoint(checkpoint_path)
    restore, fresh, unused = plan_restore(checkpoint_path, variables, exclude_scopes)
    missing = [name for name in fresh if name in set(required)]
    if missing:
        raise CheckpointError('checkpoint %s lacks %s of this model (a different network?); '
                              'use another output directory' % (checkpoint_path,
                                                                ', '.join(missing[:5])))
    log('Initialising %d variables from %s' % (len(restore), checkpoint_path))
    if fresh:
        log('Initialised fresh (not in the checkpoint, or excluded): %s' % ', '.join(fresh))
    if unused:
        log('Checkpoint variables not used: %s' % ', '.join(unused))
    saver = tf.train.Saver(restore)

    def init_fn(session):
        saver.restore(session, checkpoint_path)

    init_fn.fresh = fresh
    return init_fn


def fresh_moving_averages(init_fn):
    """Names of the default graph's batch-norm moving averages that start at their initial
    values: those `init_fn` (make_init_fn's) does not restore, or all when it is None."""
    fresh = init_fn.fresh if init_fn else [v.op.name for v in tf.model_variables()]
    moving = {v.op.name for v in tf.moving_average_variables()}
    return [name for name in fresh if name in moving]


MOVING_AVERAGES = ('moving_mean', 'moving_variance')  # slim's batch-norm statistics' names
WINDOW_SHARE = 10  # moving averages starting fresh must average over at most 1/10 of a run


def decay_for_steps(steps):
    """The batch-norm decay whose window, 1 / (1 - decay), is a tenth of a `steps`-step run
    (rounded down to 3 decimals: 300 steps -> 0.966, 1000 -> 0.99)."""
    return max(math.floor((1.0 - float(WINDOW_SHARE) / steps) * 1000) / 1000, 0.0)


def checkpoint_has_moving_averages(checkpoint_path, exclude_scopes=()):
    """Whether the checkpoint holds batch-norm statistics outside `exclude_scopes`."""
    try:
        names = tf.train.load_checkpoint(resolve_checkpoint(checkpoint_path)
                                         ).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError, CheckpointError):
        return False  # the restore itself says what is wrong with it
    return any(name.rsplit('/', 1)[-1] in MOVING_AVERAGES and not _excluded(name, exclude_scopes)
               for name in names)


def suited_batch_norm_decay(config, takes_decay):
    """(decay, why or None): the batch-norm decay a run trains with. A network whose batch
    norms start fresh (no checkpoint_path, or one without batch-norm statistics) and whose
    configured window is longer than a tenth of max_steps gets decay_for_steps instead: its
    moving averages would otherwise still hold much of their initial values at the end, and
    validation, evaluation and exports would normalise with them (camvid7's MobileNet FCN,
    300 steps at 0.99: val mIoU 0.09; at 0.966: 0.43). Depends on the config alone, so a
    resumed run derives the same value."""
    decay = config.batch_norm_decay
    if not takes_decay or 1.0 / (1.0 - decay) <= config.max_steps / float(WINDOW_SHARE):
        return decay, None
    if config.checkpoint_path and checkpoint_has_moving_averages(
            config.checkpoint_path, config.checkpoint_exclude_scopes):
        return decay, None
    suited = decay_for_steps(config.max_steps)
    if suited >= decay:
        return decay, None
    return suited, ('batch_norm_decay %g averages over about %d steps, more than a tenth of '
                    'max_steps %d, and the batch norms start fresh: training with %g instead '
                    '(a window of about %d steps), so that inference normalises with this '
                    "run's statistics" % (decay, round(1.0 / (1.0 - decay)), config.max_steps,
                                          suited, round(1.0 / (1.0 - suited))))


def moving_average_warning(fresh, decay, steps):
    """A warning (str) when batch-norm moving averages that start fresh (`fresh`: their names)
    average over more than a tenth of a `steps`-step run at `decay`: at its end they would
    still hold much of their initial values and of early training's statistics, and models
    in inference mode (validation, evaluation, export) would give garbage. Else None."""
    window = 1.0 / (1.0 - decay)
    if not fresh or window <= steps / 10.0:
        return None
    suggestion = decay_for_steps(steps)
    return ('Warning: %d batch-norm moving averages start fresh (e.g. %s) and batch_norm_decay '
            '%g averages over about %d steps, more than a tenth of max_steps %d: inference '
            '(validation, evaluate.py, exports) would use stale statistics; set '
            '--batch_norm_decay %g or lower, or start from a checkpoint that has them'
            % (len(fresh), fresh[0], decay, round(window), steps, suggestion))
