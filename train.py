"""Trains an FCN (default FCN-8s on VGG16) from TFRecords, saving checkpoints and validation JPEGs.

    python train.py --config configs/camvid_fcn8s.yaml --dataset_train train.record \
        --dataset_val val.record --checkpoint_path vgg_16.ckpt --output_dir runs/camvid \
        --batch_size 2 --max_steps 30 --crop_size 160,224 --save_every 10 --eval_every 10 \
        --num_eval_images 4

Every config key can be given as a flag (flags override the YAML; `--help` lists them by
section). A rerun with the same --output_dir resumes from its latest checkpoint.

    python train.py --config configs/camvid_fcn8s.yaml ... --output_dir runs/lr --find_lr

runs the learning-rate range test instead (utils/training/lr_finder.py): a few hundred steps
with a rate growing from --find_lr_min to --find_lr_max, then lr_find.png, lr_find.json and one
line with the suggested rate; it writes no checkpoint.
"""
import os
import signal
import sys

from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from utils.cli import job_parser, run_job  # noqa: E402
from utils.config import add_config_flags, overrides_from_args, resolve_config  # noqa: E402
from utils.runtime import make_logger, setup_tensorflow  # noqa: E402
from utils.training.lr_finder import LR_FIND_PLOT, check_range, find_learning_rate  # noqa: E402
from utils.evaluation.metrics import percent  # noqa: E402
from utils.training.monitoring import format_scores  # noqa: E402
from utils.training.trainer import run_summary, train  # noqa: E402


def parse_args(argv=None):
    parser = job_parser(__doc__)
    parser.add_argument('--config', help='experiment YAML in configs/')
    finder = parser.add_argument_group('learning-rate range test (instead of training)')
    finder.add_argument('--find_lr', action='store_true',
                        help='run the range test and write lr_find.png / lr_find.json in '
                        '--output_dir; no checkpoint is written')
    finder.add_argument('--find_lr_min', type=float, default=1e-6, help='first rate (1e-6)')
    finder.add_argument('--find_lr_max', type=float, default=1e-1,
                        help='last rate, unless the loss diverges first (0.1)')
    finder.add_argument('--find_lr_steps', type=int, default=200,
                        help='steps from the first to the last rate (200)')
    add_config_flags(parser)
    return parser.parse_args(argv)


def stop_on_signals(log):
    """SIGINT/SIGTERM ask the run to save a checkpoint and stop after the current step."""
    received = []

    def handler(signum, _frame):
        if received:  # a second signal: stop now
            raise KeyboardInterrupt
        received.append(signum)
        log('Received %s: saving a checkpoint after this step, then stopping'
            % signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return lambda: bool(received)


def report(summary, log):
    """The closing lines: where the run stopped, its checkpoints and validation."""
    if summary['stopped']:
        log('Stopped at step %d; checkpoint %s. Rerun the same command to resume.'
            % (summary['step'], summary['checkpoint']))
        return
    log('Finished at step %d; last checkpoint: %s' % (summary['step'], summary['checkpoint']))
    if summary['best']:
        log('Best validation mIoU %s at step %d: %s' % (percent(summary['best']['mean_iou']),
                                                        summary['best']['step'],
                                                        summary['best']['checkpoint']))
    if summary['validation']:
        log('Validation JPEGs are in %s' % summary['eval_dir'])
        log('Validation %s' % format_scores(summary['validation']))


def main(argv=None):
    args = parse_args(argv)
    log = make_logger('train')
    setup_tensorflow()

    def work():
        if args.find_lr:  # flags first: a wrong range is one line before any work
            check_range(args.find_lr_min, args.find_lr_max, args.find_lr_steps)
        config = resolve_config(args.config, overrides_from_args(args))
        if args.find_lr:
            found = find_learning_rate(config, args.find_lr_min, args.find_lr_max,
                                       args.find_lr_steps, log)
            log('Suggested learning rate: %.3g (lowest loss at %.3g; %d steps, %s); plot: %s'
                % (found['suggested_learning_rate'], found['lowest_loss_learning_rate'],
                   found['steps_run'], found['stopped'],
                   os.path.join(config.output_dir, LR_FIND_PLOT)))
            return
        log(run_summary(config))
        report(train(config, log, should_stop=stop_on_signals(log)), log)

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
