"""Recipe ablations: trains a config and its variants one after another, each as a user would
(train.py in its own process), and prints the table: setting, steps, wall time, best validation
mIoU (step), with CRF, last mIoU.

    python benchmarks/ablation.py --config configs/camvid_fcn8s.yaml \
        --variants benchmarks/camvid_ablation.yaml --max_steps 1500 --work_dir runs/ablation \
        --dataset_train camvid_train.record --dataset_val camvid_val.record \
        --checkpoint_path ../shared/pretrained/vgg_16_hed_conv.ckpt

The variants file maps a name to the config keys it changes (`baseline: {}` is the config as
it is). Every variant is checked before the first one trains. A variant whose run already
reached --max_steps is read, not retrained, so an interrupted ablation resumes; checkpoints are
deleted once a variant is scored (--keep_runs keeps them). Results go to WORK_DIR/ablation.md
and ablation.json as they come.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.cli import job_parser, run_job  # noqa: E402
from utils.config import load_yaml, resolve_config  # noqa: E402
from utils.errors import ConfigError  # noqa: E402
from utils.fileio import atomic_write_text  # noqa: E402
from utils.training.monitoring import read_jsonl  # noqa: E402

HEADER = ('| setting | changes | steps | wall | best val mIoU (step) | with CRF | last mIoU |\n'
          '|---|---|---|---|---|---|---|')


def parse_args(argv=None):
    p = job_parser(__doc__)
    p.add_argument('--config', required=True, help='the base config (YAML)')
    p.add_argument('--variants', required=True, help='YAML: name -> {config key: value}')
    p.add_argument('--only', help='comma-separated variant names to run (default: all)')
    p.add_argument('--work_dir', required=True, help='one run folder per variant goes here')
    p.add_argument('--max_steps', type=int, required=True)
    p.add_argument('--eval_every', type=int, help='default: max_steps / 3')
    p.add_argument('--dataset_train', required=True)
    p.add_argument('--dataset_val', required=True)
    p.add_argument('--checkpoint_path', default='')
    p.add_argument('--keep_runs', action='store_true', help='keep each variant\'s checkpoints')
    return p.parse_args(argv)


def variant_configs(args):
    """[(name, changes, path of the variant's YAML)], each validated."""
    base = load_yaml(args.config)
    variants = load_yaml(args.variants)
    names = args.only.split(',') if args.only else list(variants)
    unknown = [name for name in names if name not in variants]
    if unknown:
        raise ConfigError('--only: no variant %s in %s' % (', '.join(unknown), args.variants))
    os.makedirs(args.work_dir, exist_ok=True)
    eval_every = args.eval_every or max(args.max_steps // 3, 1)
    result = []
    for name in names:
        changes = variants[name] or {}
        if not isinstance(changes, dict):
            raise ConfigError('variant %s in %s must map config keys to values'
                              % (name, args.variants))
        values = dict(base, **changes, max_steps=args.max_steps, eval_every=eval_every,
                      save_every=args.max_steps)
        path = os.path.join(args.work_dir, name + '.yaml')
        atomic_write_text(path, yaml.safe_dump(values, sort_keys=False))
        try:
            resolve_config(path, run_paths(args, name))
        except ConfigError as e:
            raise ConfigError('variant %s: %s' % (name, e)) from None
        result.append((name, changes, path))
    return result


def run_paths(args, name):
    return {'dataset_train': args.dataset_train, 'dataset_val': args.dataset_val,
            'checkpoint_path': args.checkpoint_path,
            'output_dir': os.path.join(args.work_dir, name)}


def train_variant(args, name, path):
    """Trains one variant in its own process (log in WORK_DIR/NAME.log); returns wall seconds
    (the recorded ones when the run was already complete, None where none were recorded)."""
    out = os.path.join(args.work_dir, name)
    record = os.path.join(args.work_dir, name + '.wall.json')
    history = read_jsonl(os.path.join(out, 'eval', 'metrics.jsonl'))
    if history and history[-1]['step'] >= args.max_steps:  # done before
        if not os.path.exists(record):
            return None
        with open(record) as f:
            return json.load(f)['seconds']
    flags = []
    for key, value in run_paths(args, name).items():
        flags += ['--' + key, value]
    start = time.time()
    with open(os.path.join(args.work_dir, name + '.log'), 'a') as log:
        code = subprocess.call([sys.executable, os.path.join(ROOT, 'train.py'), '--config',
                                path] + flags, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        raise ConfigError('variant %s: train.py exited with %d; see %s' % (
            name, code, os.path.join(args.work_dir, name + '.log')))
    seconds = time.time() - start
    atomic_write_text(record, json.dumps({'seconds': seconds}))
    return seconds


def score_row(args, name, changes, seconds):
    """The variant's table row (dict) from its run's validation history."""
    history = read_jsonl(os.path.join(args.work_dir, name, 'eval', 'metrics.jsonl'))
    if not history:
        raise ConfigError('variant %s validated no time; give --dataset_val' % name)
    best = max(history, key=lambda row: row['mean_iou'])
    return {'name': name, 'changes': changes, 'steps': history[-1]['step'], 'seconds': seconds,
            'best_mean_iou': best['mean_iou'], 'best_step': best['step'],
            'best_crf_mean_iou': best.get('crf', {}).get('mean_iou'),
            'last_mean_iou': history[-1]['mean_iou']}


def format_row(row):
    changes = ', '.join('%s %s' % (k, json.dumps(v)) for k, v in row['changes'].items())
    crf = row['best_crf_mean_iou']
    wall = '?' if row['seconds'] is None else '%d min' % round(row['seconds'] / 60)
    return '| %s | %s | %d | %s | %.1f (%d) | %s | %.1f |' % (
        row['name'], changes or 'the config as it is', row['steps'], wall,
        100 * row['best_mean_iou'], row['best_step'], '-' if crf is None else '%.1f' % (100 * crf),
        100 * row['last_mean_iou'])


def main(argv=None):
    args = parse_args(argv)

    def work():
        variants = variant_configs(args)
        print(HEADER, flush=True)
        rows = []
        for name, changes, path in variants:
            row = score_row(args, name, changes, train_variant(args, name, path))
            rows.append(row)
            print(format_row(row), flush=True)
            atomic_write_text(os.path.join(args.work_dir, 'ablation.json'),
                              json.dumps(rows, indent=2))
            atomic_write_text(os.path.join(args.work_dir, 'ablation.md'),
                              '\n'.join([HEADER] + [format_row(r) for r in rows]) + '\n')
            if not args.keep_runs:
                for folder in ('train', 'best'):
                    shutil.rmtree(os.path.join(args.work_dir, name, folder), ignore_errors=True)
        return 0

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
