"""One training run's loop state, with a method per thing the loop does: take a step, log,
save a checkpoint, validate (keeping the best checkpoint), finish."""
import glob
import json
import math
import os
import time

import tensorflow.compat.v1 as tf

from utils.data.records import data_error_from
from utils.errors import TrainingError, error_reason
from utils.rundir import CHECKPOINT_TEMPORARY_PATTERN
from utils.evaluation.metrics import percent
from utils.evaluation.reports import class_names_of
from utils.evaluation.scoring import run_validation
from utils.fileio import atomic_write_text, write_remedy
from utils.training.monitoring import (append_jsonl, current_rss_mb, format_duration,
                                       format_scores, format_size, image_summary,
                                       keep_steps_up_to, plot_progress, read_jsonl,
                                       scalar_summary)


class TrainingLoop:
    """The loop of trainer.train over an open session, after restore or initialisation.

    `parts` is trainer.build_graph's TrainingGraph; only the `chief` writes files.
    """

    def __init__(self, config, run, session, parts, chief, log, resumed=None, crf_pool=None):
        self.config, self.run, self.session, self.parts = config, run, session, parts
        self.crf_pool = crf_pool
        self.chief, self.log = chief, log
        self.step = self.start_step = int(session.run(parts.ops.global_step))
        self.saved_step = self.step if resumed else None
        self.validated_step = None
        self.last_saved, self.last_result = resumed, None
        self.stopped = False
        self.loss = self.learning_rate = None
        self.window_steps, self.window_seconds = 0, 0.0
        self.run_start = self.last_save_time = time.time()
        self.best = run.read_best() or {'mean_iou': -1.0}
        if chief:  # steps logged after the checkpoint resumed from are logged again
            for path in (run.history_path, run.metrics_path):
                keep_steps_up_to(path, self.step)
        # Seconds spent in training steps (input waits included; validation, saving and
        # start-up not), over every job of the run: the time axis of time-to-quality curves.
        self.train_seconds = training_seconds_before(run.history_path, self.step) if (
            chief) else 0.0
        self.train_writer = tf.summary.FileWriter(run.train_dir) if chief else None
        self.eval_writer = tf.summary.FileWriter(run.eval_dir) if chief else None

    def stage(self):
        """'stage1' while two-stage training trains the head alone, else 'all'."""
        return 'stage1' if self.step < self.config.stage1_steps else 'all'

    def train_step(self):
        """Runs one optimiser step; raises TrainingError on a non-finite loss."""
        stage, config = self.stage(), self.config
        if stage == 'stage1' and self.step == self.start_step:
            self.log('Stage one: training only %s until step %d'
                     % (', '.join(config.stage1_trainable_scopes), config.stage1_steps))
        elif config.stage1_steps and self.step == config.stage1_steps:
            self.log('Stage two: training all trainable variables from step %d' % self.step)
        start = time.time()
        try:
            self.loss, self.learning_rate, step = self.session.run(
                [self.parts.ops.loss[stage], self.parts.ops.learning_rate,
                 self.parts.ops.next_step[stage]])
        except tf.errors.ResourceExhaustedError:
            raise TrainingError('out of memory at batch_size %d, crop_size %s; lower them'
                                % (config.batch_size, 'x'.join(map(str, config.crop_size))))
        except tf.errors.OpError as e:
            error = data_error_from(e)
            if error is None:
                raise
            self.save()  # the steps so far are not lost
            raise error from None
        self.step = int(step)
        seconds = time.time() - start
        self.window_seconds += seconds
        self.train_seconds += seconds
        self.window_steps += 1
        if not math.isfinite(self.loss):
            raise TrainingError('loss became %s at step %d; stopped without saving: %s (lower '
                                'the learning rate?)' % (float(self.loss), self.step,
                                                         self.last_good()))

    def maybe_log(self):
        """Every log_every steps (and the last): loss, images/s, ETA, history, TensorBoard."""
        config, step = self.config, self.step
        if step % config.log_every and step != config.max_steps:
            return
        rate = self.window_steps * config.batch_size / self.window_seconds
        per_step = (time.time() - self.run_start) / (step - self.start_step)
        self.log('step %d Current Loss: %.4f' % (step, self.loss))
        self.log('[%.2f] imgs/s  lr %.3g  %d/%d steps, %s remaining'
                 % (rate, self.learning_rate, step, config.max_steps,
                    format_duration(per_step * (config.max_steps - step))))
        failures = self.parts.failures
        if failures.count:
            self.log('skipped %d undecodable record read(s) so far (%d distinct, last: %s)'
                     % (failures.count, len(set(failures.names)), failures.names[-1]))
        if self.chief:
            append_jsonl(self.run.history_path,
                         {'step': step, 'loss': float(self.loss),
                          'learning_rate': float(self.learning_rate), 'images_per_s': rate,
                          'rss_mb': round(current_rss_mb(), 1),
                          'train_seconds': round(self.train_seconds, 2)})
            self.train_writer.add_summary(scalar_summary(
                {'loss': self.loss, 'learning_rate': self.learning_rate,
                 'images_per_s': rate}), step)
        self.window_steps, self.window_seconds = 0, 0.0

    def maybe_save(self):
        """Saves every save_every steps, or when save_every_seconds have passed."""
        config = self.config
        if self.step % config.save_every == 0 or (
                config.save_every_seconds
                and time.time() - self.last_save_time >= config.save_every_seconds):
            self.save()

    def maybe_validate(self):
        if self.parts.eval and self.step % self.config.eval_every == 0:
            self.validate()

    def save(self):
        """Saves a checkpoint of the current step (the chief only); returns its path."""
        if not self.chief:
            return None
        step = self.step
        if not self.session.run(self.parts.ops.weights_finite):
            raise TrainingError('weights became non-finite by step %d; not saving them: %s '
                                '(lower the learning rate?)' % (step, self.last_good()))
        path = self.write_checkpoint(self.parts.saver, self.run.checkpoint_prefix)
        if self.saved_step is None or self.saved_step == self.start_step:  # this job's first
            self.log('Checkpoint size %s (up to %d kept, plus the best without optimiser state)'
                     % (format_size(checkpoint_bytes(path)), self.config.keep_checkpoints))
        self.last_save_time = time.time()
        self.last_saved, self.saved_step = path, step
        self.log('Model saved in file: %s' % path)
        return path

    def last_good(self):
        """Where the run's last good checkpoint is, as a user-facing phrase."""
        newest = self.run.latest_checkpoint()
        if newest is None:
            return 'no checkpoint of this run was saved yet (save_every %d)' % (
                self.config.save_every)
        return 'the last good checkpoint is %s' % newest

    def write_checkpoint(self, saver, prefix):
        """saver.save at the current step; a failed save leaves no temporary and is one line
        with the file system's reason and what to do about it."""
        try:
            return saver.save(self.session, prefix, global_step=self.step)
        except (tf.errors.OpError, OSError) as e:
            for path in glob.glob(glob.escape('%s-%d' % (prefix, self.step))
                                  + CHECKPOINT_TEMPORARY_PATTERN):
                os.remove(path)
            reason = error_reason(e)
            raise TrainingError('cannot write checkpoint %s-%d (%s); %s: the earlier checkpoints '
                                'are intact' % (prefix, self.step, reason, write_remedy(e).replace(
                                    'output location', '--output_dir'))) from None

    def validate(self):
        """Scores and draws the validation images, records the scores, keeps the best."""
        step, run = self.step, self.run
        result = run_validation(self.session, self.parts.eval, self.config, step,
                                run.eval_dir, self.log, self.crf_pool)
        sample = result.pop('sample_pictures', {})
        append_jsonl(run.metrics_path,
                     {'step': step, 'train_seconds': round(self.train_seconds, 2),
                      **{k: v for k, v in result.items() if k != 'jpegs'}})
        self.log('step %d validation on %d images: %s' % (step, result['num_images'],
                                                          format_scores(result)))
        self.write_validation_summaries(result, sample)
        if result['mean_iou'] > self.best['mean_iou']:
            checkpoint = self.write_checkpoint(self.parts.best_saver, run.best_prefix)
            run.remove_other_checkpoints(run.best_dir, checkpoint)
            self.best.update(mean_iou=result['mean_iou'], step=step, checkpoint=checkpoint)
            atomic_write_text(run.best_path, json.dumps(  # relative: the run can move
                dict(self.best, checkpoint=run.relative(checkpoint)), indent=2))
            self.log('New best validation mIoU %s: %s' % (percent(self.best['mean_iou']),
                                                          checkpoint))
        plot_progress(run.plot_path, read_jsonl(run.history_path), read_jsonl(run.metrics_path))
        self.last_result, self.validated_step = result, step
        return result

    def write_validation_summaries(self, result, sample):
        """TensorBoard: validation mIoU (with CRF), per-class IoU, the first sample's pictures."""
        values = {'validation/mean_iou': result['mean_iou'],
                  'validation/pixel_accuracy': result['pixel_accuracy']}
        if 'crf' in result:
            values['validation/mean_iou_crf'] = result['crf']['mean_iou']
        for name, iou in zip(class_names_of(self.config), result['per_class_iou']):
            values['validation_iou/%s' % name] = iou
        self.eval_writer.add_summary(scalar_summary(values), self.step)
        for kind, picture in sample.items():
            self.eval_writer.add_summary(image_summary('sample/%s' % kind, picture), self.step)
        self.eval_writer.flush()

    def finish(self):
        """Saves the last step and, unless stopped early, validates it (once each)."""
        if self.saved_step != self.step:
            self.save()
        if self.parts.eval and self.validated_step != self.step and not self.stopped:
            self.validate()
        if self.chief:
            self.train_writer.close()
            self.eval_writer.close()

    def summary(self):
        return {'step': self.step, 'checkpoint': self.last_saved, 'eval_dir': self.run.eval_dir,
                'validation': self.last_result, 'stopped': self.stopped,
                'best': self.best if self.best['mean_iou'] >= 0 else None}


def training_seconds_before(history_path, step):
    """The training seconds a run had logged by `step` (0 for a new run or an older run's
    history, which did not record them)."""
    logged = [h.get('train_seconds', 0.0) for h in read_jsonl(history_path)
              if h.get('step', 0) <= step]
    return float(logged[-1]) if logged else 0.0


def checkpoint_bytes(prefix):
    """Bytes on disk of the checkpoint `prefix` (its index and data files)."""
    return sum(os.path.getsize(p) for p in glob.glob(glob.escape(prefix) + '.*'))
