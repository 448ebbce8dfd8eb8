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
import sys


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.cli import job_parser, run_job  # noqa: E402
from utils.config import load_yaml  # noqa: E402
from utils.errors import ConfigError  # noqa: E402
from utils.fileio import atomic_write_text  # noqa: E402
from utils.training.variants import VariantRuns  # noqa: E402

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


def variant_runs(args):
    """The VariantRuns of the flags and its validated variants [(name, changes, path)]."""
    variants = load_yaml(args.variants)
    names = args.only.split(',') if args.only else list(variants)
    unknown = [name for name in names if name not in variants]
    if unknown:
        raise ConfigError('--only: no variant %s in %s' % (', '.join(unknown), args.variants))
    runs = VariantRuns(args.config, args.work_dir, args.max_steps, args.dataset_train,
                       args.dataset_val, args.checkpoint_path, args.eval_every)
    try:
        return runs, runs.prepare({name: variants[name] for name in names})
    except ConfigError as e:
        raise ConfigError('%s (in %s)' % (e, args.variants)) from None


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
        runs, variants = variant_runs(args)
        print(HEADER, flush=True)
        rows = []
        for name, changes, path in variants:
            seconds = runs.train(name, path, log=lambda m: print(m, file=sys.stderr))
            row = runs.score_row(name, changes, seconds)
            rows.append(row)
            print(format_row(row), flush=True)
            atomic_write_text(os.path.join(args.work_dir, 'ablation.json'),
                              json.dumps(rows, indent=2))
            atomic_write_text(os.path.join(args.work_dir, 'ablation.md'),
                              '\n'.join([HEADER] + [format_row(r) for r in rows]) + '\n')
            if not args.keep_runs:
                runs.remove_checkpoints(name)
        return 0

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
