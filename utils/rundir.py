"""The run directory: what a training run keeps where, and how every later job finds it.

    OUTPUT_DIR/config.yaml                 the resolved config of the run (utils/config.py)
    OUTPUT_DIR/train/model.ckpt-STEP.*     checkpoints; a rerun resumes from the newest usable
    OUTPUT_DIR/train/history.jsonl         {'step', 'loss', 'learning_rate', 'images_per_s',
                                           'rss_mb', 'train_seconds'} per logged step
                                           (train_seconds: time in training steps so far)
    OUTPUT_DIR/best/model.ckpt-STEP.*      the checkpoint with the best validation mIoU
    OUTPUT_DIR/eval/best.json              {'mean_iou', 'step', 'checkpoint'} of that checkpoint
                                           (relative to OUTPUT_DIR)
    OUTPUT_DIR/eval/metrics.jsonl          one line of scores per validation (with its step
                                           and train_seconds)
    OUTPUT_DIR/eval/val_STEP[_K]_KIND.jpg  validation pictures per sample (utils/visualization.py)
    OUTPUT_DIR/progress.png                training loss and validation mIoU over steps
    TensorBoard event files in train/ (loss, learning rate, images/s) and eval/ (validation mIoU,
    per-class IoU, sample pictures).

Training writes it (utils/training/); evaluate.py, predict.py and export_model.py read it with
`load_run`. A run is relocatable: everything it stores about its own files is relative to
OUTPUT_DIR (best.json, and the `checkpoint` state files TF's savers write with
save_relative_paths), and reading takes a stored path's file name inside this run's own
folder, so a copied or moved run (also one written before paths were relative) uses its own
checkpoints, never the original's.
"""
import contextlib
import dataclasses
import datetime
import fcntl
import glob
import json
import os
import re
import socket
import stat

import tensorflow.compat.v1 as tf

from nets import SHAPE_ARGS
from utils.config import load_yaml, resolve_config
from utils.errors import CheckpointError, ConfigError
from utils.evaluation.metrics import percent
from utils.fileio import output_error

CONFIG_FILENAME = 'config.yaml'
TRAIN_SUBDIR = 'train'
EVAL_SUBDIR = 'eval'
BEST_SUBDIR = 'best'
CHECKPOINT_BASENAME = 'model.ckpt'
HISTORY_FILENAME = 'history.jsonl'
METRICS_FILENAME = 'metrics.jsonl'
BEST_FILENAME = 'best.json'
PLOT_FILENAME = 'progress.png'
LOCK_FILENAME = '.lock'  # held by the training job writing the run (see RunDir.lock)
# What a checkpoint save killed half-way leaves: TF's temporaries, never a checkpoint.
CHECKPOINT_TEMPORARY_PATTERN = '*tempstate*'
# Config keys that change the network's variables: a run cannot resume under other values.
VARIABLE_KEYS = ('model', 'num_classes') + SHAPE_ARGS


class RunDir:
    """Paths of one run directory (nothing is created until `make`)."""

    def __init__(self, path):
        self.path = path
        self.config_path = os.path.join(path, CONFIG_FILENAME)
        self.train_dir = os.path.join(path, TRAIN_SUBDIR)
        self.eval_dir = os.path.join(path, EVAL_SUBDIR)
        self.best_dir = os.path.join(path, BEST_SUBDIR)
        self.checkpoint_prefix = os.path.join(self.train_dir, CHECKPOINT_BASENAME)
        self.best_prefix = os.path.join(self.best_dir, CHECKPOINT_BASENAME)
        self.history_path = os.path.join(self.train_dir, HISTORY_FILENAME)
        self.metrics_path = os.path.join(self.eval_dir, METRICS_FILENAME)
        self.best_path = os.path.join(self.eval_dir, BEST_FILENAME)
        self.plot_path = os.path.join(path, PLOT_FILENAME)

    def make(self):
        try:
            for directory in (self.train_dir, self.eval_dir, self.best_dir):
                os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise output_error(self.path, e) from None

    @contextlib.contextmanager
    def lock(self, log=print):
        """Holds the run directory for one training job.

        The lock is an flock on OUTPUT_DIR/.lock, which the kernel releases when the holder
        exits however it exits; the file names the holder (pid, host, start). A second job
        stops at once with that name; a name left by a job that died is taken over, with a
        message.
        """
        path = os.path.join(self.path, LOCK_FILENAME)
        try:
            os.makedirs(self.path, exist_ok=True)
            # Never through a link: a .lock linked to a file elsewhere would be read into the
            # log and overwritten.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as e:
            if os.path.islink(path):
                raise ConfigError('%s is a symbolic link (to %s), not a lock file of this run: '
                                  'remove the link and rerun' % (path, os.readlink(path))) from None
            raise output_error(path, e) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigError('%s is not a regular file: remove it and rerun' % path)
        with os.fdopen(fd, 'r+') as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise ConfigError('output dir %s is in use by another training job (%s); wait '
                                  'for it to end or choose another --output_dir'
                                  % (self.path, f.read().strip() or 'unknown')) from None
            previous = f.read().strip()
            if previous:
                log('Taking over the lock of %s left by a job that did not end cleanly (%s)'
                    % (self.path, previous))
            f.seek(0)
            f.truncate()
            f.write('pid %d on %s since %s' % (os.getpid(), socket.gethostname(),
                                                datetime.datetime.now().isoformat(' ', 'seconds')))
            f.flush()
            try:
                yield
            finally:  # released cleanly: no lock file left (another job's open of it fails
                with contextlib.suppress(OSError):  # its flock, as we still hold it)
                    os.remove(path)

    def remove_other_checkpoints(self, directory, keep):
        """Removes the checkpoints in `directory` other than the prefix `keep` (e.g. the best
        checkpoint that a resumed run's new best replaces)."""
        for path in glob.glob(os.path.join(glob.escape(directory), CHECKPOINT_BASENAME + '-*')):
            if not path.startswith(keep + '.'):
                with contextlib.suppress(OSError):
                    os.remove(path)

    def remove_checkpoint_temporaries(self):
        """Removes what killed checkpoint saves left in train/ and best/; returns (count,
        bytes)."""
        stale = [p for directory in (self.train_dir, self.best_dir)
                 for p in glob.glob(os.path.join(glob.escape(directory),
                                                 CHECKPOINT_TEMPORARY_PATTERN))]
        size = 0
        for path in stale:
            with contextlib.suppress(OSError):
                size += os.path.getsize(path)
                os.remove(path)
        return len(stale), size

    def check_resumable(self, config):
        """Refuses a config whose network differs from the one of the run already here. A run
        without checkpoints (a first start that failed) binds nothing: its config is
        replaced by the corrected rerun."""
        if not os.path.isfile(self.config_path) or not self.checkpoint_candidates():
            return
        saved = load_yaml(self.config_path)
        changed = ['%s: %r there, %r now' % (k, saved.get(k), getattr(config, k))
                   for k in VARIABLE_KEYS if k in saved and saved[k] != getattr(config, k)]
        if changed:
            raise ConfigError('output dir %s holds a run of a different network (%s); use another '
                              '--output_dir' % (self.path, '; '.join(changed)))

    def checkpoint_candidates(self):
        """Checkpoint prefixes of the run, newest step first: those whose index file is on
        disk, whatever the state file says (it may be stale or torn after a kill)."""
        prefixes = [p[:-len('.index')] for p in
                    glob.glob(glob.escape(self.checkpoint_prefix) + '-*.index')]
        prefixes = [p for p in prefixes if re.search(r'-(\d+)$', p)]
        return sorted(prefixes, key=lambda p: int(p.rsplit('-', 1)[1]), reverse=True)

    def latest_checkpoint(self):
        """The newest checkpoint of train/ (see latest_in), or None."""
        return latest_in(self.train_dir)

    def relative(self, path):
        """`path` (a file of this run) relative to the run directory, as the run stores it."""
        return os.path.relpath(path, self.path)

    def read_best(self):
        """best.json's {'mean_iou', 'step', 'checkpoint'} with 'checkpoint' the prefix inside
        this run's folder (also for a run written with absolute paths, then copied or moved),
        or None before any validation."""
        if not os.path.lexists(self.best_path):
            return None
        if os.path.islink(self.best_path):
            raise ConfigError('%s is a symbolic link, not this run\'s record of its best '
                              'checkpoint: remove it (the next validation writes it again)'
                              % self.best_path)
        try:
            with open(self.best_path) as f:
                best = json.load(f)
            stored = best['checkpoint']
            float(best['mean_iou']), int(best['step'])  # noqa: B018 (both must be numbers)
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError('%s is damaged (%s): remove it (the next validation writes it '
                              'again), or give --checkpoint or --latest' % (self.best_path, e)
                              ) from None
        stored = str(stored)
        if os.path.isabs(stored):  # written before paths were relative: its place in the run
            stored = os.path.join(os.path.basename(os.path.dirname(stored)),
                                  os.path.basename(stored))
        path = os.path.normpath(os.path.join(self.path, stored))
        if os.path.relpath(path, self.path).startswith(os.pardir):  # climbs out with '..'
            path = os.path.join(self.best_dir, os.path.basename(stored))  # only inside the run
        best['checkpoint'] = path
        return best


def validation_prefix(step, index, num_images):
    """File-name prefix of a validation sample's pictures: 'val_STEP' for a single sample,
    'val_STEP_K' when a validation draws several."""
    return 'val_%d' % step if num_images == 1 else 'val_%d_%d' % (step, index)


def latest_in(directory):
    """The newest checkpoint prefix that the `checkpoint` state file of `directory` names,
    looked up in `directory` itself (the state file of a run written before paths were
    relative holds absolute paths to where it was written, which after a copy name the
    original's files), or None."""
    if not os.path.isdir(directory):
        return None
    state = tf.train.get_checkpoint_state(directory)
    if state and state.model_checkpoint_path:
        prefix = os.path.join(directory, os.path.basename(state.model_checkpoint_path))
        if os.path.exists(prefix + '.index'):
            return prefix
    return None


def resolve_checkpoint(path):
    """A checkpoint prefix from a prefix or a directory holding checkpoints."""
    if os.path.isdir(path):
        latest = latest_in(path)
        if latest is None:
            raise CheckpointError('directory %s holds no checkpoint' % path)
        return latest
    if not (os.path.exists(path + '.index') or os.path.isfile(path)):
        raise CheckpointError('checkpoint %s not found (give the prefix, e.g. .../vgg_16.ckpt, '
                              'whose .index file must exist)' % path)
    return path


def load_run(run_dir, checkpoint=None, latest=False, log=print):
    """(Config, checkpoint prefix) of a run directory, saying which checkpoint through `log`.

    The run's best checkpoint by validation mIoU when it kept one, else (or with `latest`) its
    latest; `checkpoint` (a prefix or directory) overrides both.
    """
    run = RunDir(run_dir)
    if not os.path.isfile(run.config_path):
        raise ConfigError('%s has no %s: --run_dir must be the --output_dir of a training run'
                          % (run_dir, CONFIG_FILENAME))
    config = dataclasses.replace(resolve_config(run.config_path), output_dir=run_dir)  # moved?
    if checkpoint:
        checkpoint = resolve_checkpoint(checkpoint)
        log('Using checkpoint %s' % checkpoint)
        return config, checkpoint
    best = None if latest else run.read_best()
    if best and os.path.exists(best['checkpoint'] + '.index'):
        log('Using the best checkpoint (validation mIoU %s at step %d; --latest for the '
            'newest): %s' % (percent(best['mean_iou']), best['step'], best['checkpoint']))
        return config, best['checkpoint']
    newest = run.latest_checkpoint()
    if newest is None:
        raise CheckpointError('run %s holds no checkpoint in %s yet; train first or give '
                              '--checkpoint' % (run_dir, run.train_dir))
    log('Using the latest checkpoint: %s' % newest)
    return config, newest
