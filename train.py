"""Trains an FCN (default FCN-8s on VGG16) from TFRecords, saving checkpoints and validation JPEGs.

    python train.py --config configs/camvid_fcn8s.yaml --dataset_train train.record \
        --dataset_val val.record --checkpoint_path vgg_16.ckpt --output_dir runs/camvid \
        --batch_size 2 --max_steps 30 --crop_size 160,224 --save_every 10 --eval_every 10 \
        --num_eval_images 4

Every config key can be given as a flag (flags override the YAML; `--help` lists them by
section). A rerun with the same --output_dir resumes from its latest checkpoint.
"""
import signal
import sys

from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from utils.cli import job_parser, run_job  # noqa: E402
from utils.config import add_config_flags, overrides_from_args, resolve_config  # noqa: E402
from utils.runtime import make_logger, setup_tensorflow  # noqa: E402
from utils.training.monitoring import format_scores  # noqa: E402
from utils.training.trainer import train  # noqa: E402


def parse_args(argv=None):
    parser = job_parser(__doc__)
    parser.add_argument('--config', help='experiment YAML in configs/')
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
        log('Best validation mIoU %.4f at step %d: %s' % (summary['best']['mean_iou'],
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
        config = resolve_config(args.config, overrides_from_args(args))
        log('Config: %s' % config.to_dict())
        report(train(config, log, should_stop=stop_on_signals(log)), log)

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
