"""Compares training runs side by side: compare.html (validation and loss curves, per-class IoU
of each run's best validation with the best per class marked, the settings that differ),
compare.png, and TensorBoard HParams summaries in OUTPUT_DIR/hparams.

    python compare_runs.py runs/camvid runs/camvid_fast runs/camvid7 --output_dir compare
    tensorboard --logdir compare/hparams      # the same runs in TensorBoard's HPARAMS tab

Runs still training are read as far as they have written; nothing in a run is changed.
"""
import sys

from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from utils.cli import job_parser, run_job  # noqa: E402
from utils.errors import ConfigError  # noqa: E402
from utils.runtime import make_logger, setup_tensorflow  # noqa: E402
from utils.training.comparison import read_run, write_comparison  # noqa: E402


def parse_args(argv=None):
    parser = job_parser(__doc__)
    parser.add_argument('run_dirs', nargs='+', metavar='RUN_DIR',
                        help='training runs (train.py --output_dir folders)')
    parser.add_argument('--output_dir', required=True,
                        help='where compare.html, compare.png and hparams/ go')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    log = make_logger('compare_runs')
    setup_tensorflow()

    def work():
        runs = [read_run(path) for path in args.run_dirs]
        if len({r.path for r in runs}) < len(runs):
            raise ConfigError('a run folder is given twice: %s' % ' '.join(args.run_dirs))
        if len(runs) == 1:
            log('One run given: the page shows it alone (give two or more to compare)')
        page = write_comparison(runs, args.output_dir)
        for run in runs:
            log('%s: %s, best val mIoU %s' % (
                run.name, run.status, '%.1f%% at step %d' % (100 * run.best['mean_iou'],
                                                            run.best['step'])
                if run.best else 'none yet'))
        log('Wrote %s' % page)

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
