"""Operations budget for deployment: per-layer MFLOPs of a network at an input size, the total
per image, and the GOPS needed for a number of cameras at a frame rate, against a budget.

    python count_ops.py --model mobilenet_v1_fcn --depth_multiplier 0.5 --classifier_kernel 7 \
        --classifier_depth 1024 --num_classes 7 --input_size 320,480 --cameras 4 --fps 15 \
        --budget_gops 70
    python count_ops.py --config configs/camvid_fcn8s.yaml --input_size 360,480
"""
import sys

from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from nets import NETWORK_ARGS  # noqa: E402
from utils.cli import (job_parser, list_of, non_negative_float, positive_int,  # noqa: E402
                       run_job)
from utils.config import add_config_flags, overrides_from_args, resolve_config  # noqa: E402
from utils.deploy.operations import budget, count_ops, format_table  # noqa: E402
from utils.inference.predictor import MIN_INPUT_SIDE  # noqa: E402
from utils.runtime import setup_tensorflow  # noqa: E402

NETWORK_KEYS = ('model', 'num_classes') + NETWORK_ARGS  # the config keys this job takes


def parse_args(argv=None):
    p = job_parser(__doc__)
    p.add_argument('--config', help='experiment YAML (its network settings are used)')
    add_config_flags(p, NETWORK_KEYS)
    p.add_argument('--input_size', required=True, help='HEIGHT,WIDTH',
                   type=list_of(int, count=2, minimum=MIN_INPUT_SIDE, example='320,480'))
    p.add_argument('--cameras', type=positive_int, default=1)
    p.add_argument('--fps', type=non_negative_float, default=1.0, help='per camera (> 0)')
    p.add_argument('--budget_gops', type=non_negative_float,
                   help='available Giga-operations per second (> 0)')
    args = p.parse_args(argv)
    if not args.fps:
        p.error('argument --fps: a camera budget of 0 frames per second needs no operations')
    if args.budget_gops == 0:
        p.error('argument --budget_gops: a budget of 0 GOPS holds no network')
    return args


def print_budget(config, rows, args):
    """The per-layer table, the total per image and the GOPS for cameras x fps."""
    height, width = args.input_size
    total = sum(v for _, v in rows)
    print('%s, %d classes, input %dx%d (height x width)'
          % (config.model, config.num_classes, height, width))
    print(format_table(rows))
    result = budget(total, args.cameras, args.fps, args.budget_gops)
    print('Per image: %.1f MFLOPs = %.2f GFLOPs' % (total, total / 1000))
    print('%d camera(s) x %g fps = %g images/s: %.1f GOPS needed'
          % (args.cameras, args.fps, result['images_per_second'], result['gops_needed']))
    if args.budget_gops is not None:
        print('Budget %.1f GOPS: %s (%.0f%% used)' % (
            args.budget_gops, 'fits' if result['fits'] else 'DOES NOT FIT',
            100 * result['gops_needed'] / args.budget_gops))


def main(argv=None):
    args = parse_args(argv)
    setup_tensorflow()

    def work():
        config = resolve_config(args.config, overrides_from_args(args), class_table=False)
        print_budget(config, count_ops(args.input_size, config.num_classes,
                                       **config.network_args()), args)

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
