"""Time to quality: validation mIoU (no CRF, the whole val split) against steps, training
minutes, AVX2-class minutes and training PFLOP, for one recipe per JSON file, and the curves
of several recipes on one picture.

    # train a recipe, validating every 200 steps, and record its curve
    python benchmarks/time_to_quality.py run --label "fast recipe" --json ttq/fast.json \
        --config configs/camvid_fcn8s_fast.yaml --dataset_train camvid_train.record \
        --dataset_val camvid_val.record --checkpoint_path vgg_16_hed_conv.ckpt \
        --output_dir runs/ttq_fast --eval_every 200
    # the curve of a run trained before (its validations must cover the whole val split)
    python benchmarks/time_to_quality.py curve --run_dir runs/camvid --json ttq/full.json \
        --label "7000-step recipe" --gemm_peak 119.5
    # a recipe too long to rerun here: its recorded scores by step, timed by a measured step
    python benchmarks/time_to_quality.py projected --config configs/camvid_fcn8s.yaml \
        --label "7000-step recipe" --json ttq/full.json --step_seconds 5.4 --gemm_peak 114.3 \
        --scores 500:0.595,1500:0.629,3000:0.634,4500:0.700,6000:0.710,7000:0.717
    # several recipes on one picture
    python benchmarks/time_to_quality.py plot ttq/*.json --output docs/time_to_quality.png

Training minutes are the run's own `train_seconds` (time in training steps, input waits
included; validation, checkpoints and start-up not). AVX2-class minutes convert them to the
reference machine of the README's targets, a 2-core AVX2 CPU with a 90 GFLOP/s float32
matrix-multiply peak: minutes x (this machine's measured peak / 90). The peak is measured
before and after `run` (benchmarks/measurements.gemm_peak_gflops) and their mean is used.
Training PFLOP count images x the training FLOPs of one crop: the forward pass of every layer,
plus twice the forward of the layers that train (their weight and input gradients;
utils.deploy.operations.count_ops), so a recipe with frozen early blocks is credited with the
work it saves.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils.startup import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

from utils.cli import job_parser, run_job  # noqa: E402
from utils.config import add_config_flags, overrides_from_args, resolve_config  # noqa: E402
from utils.errors import ConfigError  # noqa: E402
from utils.fileio import atomic_path, atomic_write_text  # noqa: E402
from utils.rundir import RunDir  # noqa: E402
from utils.runtime import cpu_class, make_logger, setup_tensorflow  # noqa: E402
from utils.training.monitoring import read_jsonl  # noqa: E402
from utils.visualization import matplotlib_text  # noqa: E402

REFERENCE_PEAK_GFLOPS = 90.0  # the README's reference: a 2-core AVX2 CPU (AMD EPYC)
TARGET_MIOU = 0.69  # the fast recipe's target (issue 29), drawn on the picture
TARGET_MINUTES = 90  # ... in AVX2-class minutes


def parse_args(argv=None):
    parser = job_parser(__doc__)
    commands = parser.add_subparsers(dest='command', required=True)
    run = commands.add_parser('run', help='train a recipe and record its curve')
    run.add_argument('--config', required=True, help='the recipe (YAML)')
    run.add_argument('--label', required=True, help='the recipe\'s name on the picture')
    run.add_argument('--json', required=True, help='where its curve goes')
    add_config_flags(run)
    curve = commands.add_parser('curve', help='the curve of a run trained before')
    curve.add_argument('--run_dir', required=True)
    curve.add_argument('--label', required=True)
    curve.add_argument('--json', required=True)
    curve.add_argument('--gemm_peak', type=float, required=True,
                       help='float32 matmul GFLOP/s of the machine that trained it')
    curve.add_argument('--cpu', default='', help='that machine\'s CPU class, as text')
    projected = commands.add_parser('projected', help='recorded scores by step, timed by a '
                                    'step time measured here (marked projected)')
    projected.add_argument('--config', required=True)
    projected.add_argument('--label', required=True)
    projected.add_argument('--json', required=True)
    projected.add_argument('--step_seconds', type=float, required=True,
                           help='seconds per training step of the config, measured here')
    projected.add_argument('--gemm_peak', type=float, required=True)
    projected.add_argument('--scores', required=True, help='STEP:MIOU,... (mIoU 0..1)')
    projected.add_argument('--source', default='', help='where the scores come from')
    plot = commands.add_parser('plot', help='several curves on one picture')
    plot.add_argument('curves', nargs='+', help='JSON files of run / curve')
    plot.add_argument('--output', required=True, help='PNG')
    return parser.parse_args(argv)


def training_gflops_per_image(config):
    """GFLOPs of training one crop of `config`: every layer's forward, plus twice the forward
    of the layers under its trainable_scopes (all when empty)."""
    from utils.deploy.operations import count_ops
    scopes = [s.rstrip('/') for s in config.trainable_scopes]

    def trains(name):
        return not scopes or any(name == s or name.startswith(s + '/') for s in scopes)

    rows = count_ops(tuple(config.crop_size), config.num_classes, full_names=True,
                     **config.network_args())
    return sum(mflops * (3 if trains(name) else 1) for name, mflops in rows) / 1000


def point(step, mean_iou, seconds, config, gflops, gemm_peak):
    """One point of a curve: a validation at `step` after `seconds` of training."""
    minutes, images = seconds / 60, step * config.batch_size
    return {'step': step, 'mean_iou': mean_iou, 'train_minutes': round(minutes, 2),
            'avx2_class_minutes': round(minutes * gemm_peak / REFERENCE_PEAK_GFLOPS, 2),
            'images': images, 'pflop': round(images * gflops / 1e6, 4)}


def projected_curve(args):
    """A curve of recorded scores by step, each timed as step x --step_seconds."""
    config = resolve_config(args.config)
    gflops = training_gflops_per_image(config)
    try:
        scores = [(int(step), float(iou)) for step, iou in
                  (item.split(':') for item in args.scores.split(','))]
    except ValueError:
        raise ConfigError('--scores %r is not STEP:MIOU,... (e.g. 500:0.595,1500:0.629)'
                          % args.scores) from None
    return {'label': args.label, 'projected': True, 'source': args.source,
            'step_seconds': args.step_seconds, 'cpu': cpu_class(),
            'gemm_peak_gflops': args.gemm_peak, 'reference_peak_gflops': REFERENCE_PEAK_GFLOPS,
            'training_gflops_per_image': round(gflops, 2), 'config': config.to_dict(),
            'points': [point(step, iou, step * args.step_seconds, config, gflops,
                             args.gemm_peak) for step, iou in scores]}


def curve_of(run_dir, label, gemm_peak, cpu):
    """The time-to-quality record of a run: its validations against steps, training minutes,
    AVX2-class minutes and PFLOP."""
    run = RunDir(run_dir)
    if not os.path.isfile(run.config_path):
        raise ConfigError('%s is not a training run (no config.yaml): give a train.py '
                          '--output_dir' % run_dir)
    config = resolve_config(run.config_path)
    history = read_jsonl(run.history_path)
    seconds_at = {h['step']: h['train_seconds'] for h in history if 'train_seconds' in h}
    gflops = training_gflops_per_image(config)
    points = []
    for scores in read_jsonl(run.metrics_path):
        step = scores['step']
        seconds = scores.get('train_seconds', seconds_at.get(step))
        if seconds is None:
            raise ConfigError('%s does not record training time at step %d (trained before '
                              'train_seconds was logged)' % (run_dir, step))
        points.append(dict(point(step, scores['mean_iou'], seconds, config, gflops, gemm_peak),
                           num_images=scores['num_images'],
                           per_class_iou=scores.get('per_class_iou')))
    if not points:
        raise ConfigError('%s has no validation yet (eval/metrics.jsonl): train with '
                          '--dataset_val and --eval_every' % run_dir)
    return {'label': label, 'run_dir': os.path.abspath(run_dir), 'cpu': cpu,
            'gemm_peak_gflops': round(gemm_peak, 1),
            'reference_peak_gflops': REFERENCE_PEAK_GFLOPS,
            'precision': config.precision, 'training_gflops_per_image': round(gflops, 2),
            'config': config.to_dict(), 'points': points}


def train_and_record(args, log):
    from benchmarks.measurements import gemm_peak_gflops
    from utils.training.trainer import train
    overrides = dict(overrides_from_args(args), num_eval_images='0', crf='false')
    config = resolve_config(args.config, overrides)
    if not config.dataset_val:
        raise ConfigError('--dataset_val is needed: the curve is validation mIoU')
    before = gemm_peak_gflops()
    log('float32 matmul peak before training: %.1f GFLOP/s (%s)' % (before, cpu_class()))
    train(config, log)
    after = gemm_peak_gflops()
    log('float32 matmul peak after training: %.1f GFLOP/s' % after)
    record = curve_of(config.output_dir, args.label, (before + after) / 2, cpu_class())
    record['gemm_peak_before_after'] = [round(before, 1), round(after, 1)]
    return record


def plot_curves(records, path):
    """Two panels: val mIoU against AVX2-class minutes, and against training PFLOP."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (by_time, by_work) = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for record in records:
        points = record['points']
        iou = [100 * p['mean_iou'] for p in points]
        style = 'o--' if record.get('projected') else 'o-'
        label = matplotlib_text(record['label'] + (' (projected)' if record.get('projected')
                                                   else ''))
        by_time.plot([p['avx2_class_minutes'] for p in points], iou, style, label=label)
        by_work.plot([p['pflop'] for p in points], iou, style, label=label)
    by_time.axhline(100 * TARGET_MIOU, color='grey', ls=':', lw=1)
    by_time.axvline(TARGET_MINUTES, color='grey', ls=':', lw=1)
    by_time.annotate('target: %g mIoU by %d min' % (100 * TARGET_MIOU, TARGET_MINUTES),
                     (TARGET_MINUTES, 100 * TARGET_MIOU), fontsize=8, color='grey',
                     xytext=(4, 4), textcoords='offset points')
    by_time.set_xlabel('training minutes, AVX2 class (2 cores, 90 GFLOP/s float32 peak)')
    by_time.set_ylabel('validation mIoU, no CRF (%)')
    by_work.set_xlabel('training PFLOP')
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter
    ticks = {by_time: [5, 10, 20, 50, 100, 200, 500, 1000, 2000],
             by_work: [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10]}
    for axis, values in ticks.items():  # log: a 90-minute and a 13-hour recipe on one axis
        axis.set_xscale('log')
        axis.xaxis.set_major_locator(FixedLocator(values))
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.grid(alpha=0.3, which='both')
    by_work.legend(fontsize=8, loc='lower right')
    fig.tight_layout()
    with atomic_path(path) as tmp_path:
        fig.savefig(tmp_path, format='png', dpi=90)
    plt.close(fig)


def load_curve(path):
    try:
        with open(path) as f:
            record = json.load(f)
        record['points']  # noqa: B018 (the one key the picture needs)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError('%s is not a time-to-quality JSON of this script (%s)'
                          % (path, e)) from None
    return record


def main(argv=None):
    args = parse_args(argv)
    log = make_logger('time_to_quality')

    def work():
        if args.command == 'plot':
            plot_curves([load_curve(path) for path in args.curves], args.output)
            log('Wrote %s' % args.output)
            return
        setup_tensorflow()
        if args.command == 'run':
            record = train_and_record(args, log)
        elif args.command == 'projected':
            record = projected_curve(args)
        else:
            record = curve_of(args.run_dir, args.label, args.gemm_peak, args.cpu)
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        atomic_write_text(args.json, json.dumps(record, indent=1))
        for p in record['points']:
            log('step %5d  mIoU %.1f  %6.1f min here  %6.1f AVX2-class min  %.3f PFLOP'
                % (p['step'], 100 * p['mean_iou'], p['train_minutes'],
                   p['avx2_class_minutes'], p['pflop']))
        log('Wrote %s' % args.json)

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
