"""Variants of a config trained one after another, each as a user would (train.py in its own
process), resumable, and scored from their validation histories. The recipe ablation
(benchmarks/ablation.py) and the design loop from a compute budget (design_for_budget.py) both
run their candidates through this.

    runs = VariantRuns('configs/camvid_fcn8s.yaml', 'runs/ablation', max_steps=1000,
                       dataset_train='train.record', dataset_val='val.record')
    for name, changes, path in runs.prepare({'baseline': {}, 'fc4096': {'fc_depth': 4096}}):
        row = runs.score_row(name, changes, runs.train(name, path))

A variant whose run already reached max_steps is read, not retrained, so an interrupted series
resumes where it stopped.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import yaml

from utils.cli import split_list
from utils.config import load_yaml, resolve_config
from utils.errors import ConfigError
from utils.fileio import atomic_write_text
from utils.rundir import BEST_SUBDIR, EVAL_SUBDIR, METRICS_FILENAME, TRAIN_SUBDIR
from utils.training.monitoring import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def absolute_list(spec):
    """A comma list of record paths or patterns with each item made absolute."""
    return ','.join(os.path.abspath(item) for item in split_list(spec)) if spec else spec


class VariantRuns:
    """Variants of the config `base` (a YAML path or a dict of keys), each in WORK_DIR/NAME."""

    def __init__(self, base, work_dir, max_steps, dataset_train, dataset_val,
                 checkpoint_path='', eval_every=None):
        self.base = load_yaml(base) if isinstance(base, str) else dict(base)
        # train.py runs from the repository root: paths given from elsewhere must still hold.
        self.work_dir, self.max_steps = os.path.abspath(work_dir), max_steps
        self.dataset_train = absolute_list(dataset_train)
        self.dataset_val = absolute_list(dataset_val)
        self.checkpoint_path = os.path.abspath(checkpoint_path) if checkpoint_path else ''
        self.eval_every = eval_every or max(max_steps // 3, 1)

    def run_dir(self, name):
        return os.path.join(self.work_dir, name)

    def run_paths(self, name):
        """The per-run flags of a variant's train.py."""
        return {'dataset_train': self.dataset_train, 'dataset_val': self.dataset_val,
                'checkpoint_path': self.checkpoint_path, 'output_dir': self.run_dir(name)}

    def prepare(self, variants):
        """{name: {config key: value}} -> [(name, changes, path of the variant's YAML)], every
        variant written and validated before any trains (ConfigError naming the variant)."""
        os.makedirs(self.work_dir, exist_ok=True)
        result = []
        for name, changes in variants.items():
            changes = changes or {}
            if not isinstance(changes, dict):
                raise ConfigError('variant %s must map config keys to values' % name)
            values = dict(self.base, **changes, max_steps=self.max_steps,
                          eval_every=self.eval_every, save_every=self.max_steps)
            path = os.path.join(self.work_dir, name + '.yaml')
            atomic_write_text(path, yaml.safe_dump(values, sort_keys=False))
            try:
                resolve_config(path, self.run_paths(name))
            except ConfigError as e:
                raise ConfigError('variant %s: %s' % (name, e)) from None
            result.append((name, changes, path))
        return result

    def validations(self, name):
        return read_jsonl(os.path.join(self.run_dir(name), EVAL_SUBDIR, METRICS_FILENAME))

    def is_done(self, name):
        history = self.validations(name)
        return bool(history) and history[-1]['step'] >= self.max_steps

    def train(self, name, path, log=print):
        """Trains one variant in its own process (its log in WORK_DIR/NAME.log) unless its run
        is complete; returns the wall seconds of its training (recorded when it ran, None
        where none were recorded)."""
        record = os.path.join(self.work_dir, name + '.wall.json')
        if self.is_done(name):
            log('%s: already trained to step %d, read' % (name, self.max_steps))
            if not os.path.exists(record):
                return None
            with open(record) as f:
                return json.load(f)['seconds']
        flags = []
        for key, value in self.run_paths(name).items():
            flags += ['--' + key, value]
        log_path = os.path.join(self.work_dir, name + '.log')
        log('%s: training to step %d (log: %s)' % (name, self.max_steps, log_path))
        start = time.time()
        with open(log_path, 'a') as out:
            code = subprocess.call([sys.executable, os.path.join(ROOT, 'train.py'), '--config',
                                    path] + flags, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=ROOT)
        if code != 0:
            raise ConfigError('variant %s: train.py exited with %d; see %s'
                              % (name, code, log_path))
        seconds = time.time() - start
        atomic_write_text(record, json.dumps({'seconds': seconds}))
        return seconds

    def score_row(self, name, changes, seconds):
        """The variant's row (dict) from its run's validation history: name, changes, steps,
        seconds, best_mean_iou, best_step, best_crf_mean_iou, last_mean_iou."""
        history = self.validations(name)
        if not history:
            raise ConfigError('variant %s validated no time; give a validation dataset' % name)
        best = max(history, key=lambda row: row['mean_iou'])
        return {'name': name, 'changes': changes, 'steps': history[-1]['step'],
                'seconds': seconds, 'best_mean_iou': best['mean_iou'],
                'best_step': best['step'],
                'best_crf_mean_iou': best.get('crf', {}).get('mean_iou'),
                'last_mean_iou': history[-1]['mean_iou']}

    def remove_checkpoints(self, name, keep_best=False):
        """Deletes a scored variant's checkpoints (train/, and best/ unless `keep_best`)."""
        for folder in (TRAIN_SUBDIR,) + (() if keep_best else (BEST_SUBDIR,)):
            shutil.rmtree(os.path.join(self.run_dir(name), folder), ignore_errors=True)
