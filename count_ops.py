"""Operations budget for deployment: per-layer MFLOPs of a network at an input size, the total
per image, and the GOPS needed for a number of cameras at a frame rate, against a budget.

    python count_ops.py --model mobilenet_v1_fcn --depth_multiplier 0.5 --classifier_kernel 7 \
        --classifier_depth 1024 --num_classes 7 --input_size 320,480 --cameras 4 --fps 15 --budget_gops 70
    python count_ops.py --config configs/camvid_fcn8s.yaml --input_size 360,480
"""
import argparse
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from utils.config import ConfigError, resolve_config  # noqa: E402
from utils.ops_count import budget, count_ops, format_table  # noqa: E402
from utils.runtime import setup_tensorflow  # noqa: E402

NETWORK_FLAGS = ('model', 'num_classes', 'depth_multiplier', 'final_endpoint',
                 'classifier_kernel', 'classifier_depth', 'fc_depth')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', help='experiment YAML (its network settings are used)')
    for name in NETWORK_FLAGS:
        p.add_argument('--' + name, help='overrides the config')
    p.add_argument('--input_size', required=True, help='HEIGHT,WIDTH')
    p.add_argument('--cameras', type=int, default=1)
    p.add_argument('--fps', type=float, default=1.0)
    p.add_argument('--budget_gops', type=float, help='available Giga-operations per second')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_tensorflow()
    try:
        overrides = {k: getattr(args, k) for k in NETWORK_FLAGS if getattr(args, k) is not None}
        if args.config is None and 'num_classes' in overrides:
            overrides.setdefault('class_names', '')
        config = resolve_config(args.config, overrides)
        height, width = (int(v) for v in args.input_size.split(','))
        rows = count_ops((height, width), config.num_classes, **config.network_args())
    except (ConfigError, ValueError) as e:
        print('error: %s' % e, file=sys.stderr)
        return 1
    total = sum(v for _, v in rows)
    print('%s, %d classes, input %dx%d (height x width)' % (config.model, config.num_classes,
                                                           height, width))
    print(format_table(rows))
    result = budget(total, args.cameras, args.fps, args.budget_gops)
    print('Per image: %.1f MFLOPs = %.2f GFLOPs' % (total, total / 1000))
    print('%d camera(s) x %g fps = %g images/s: %.1f GOPS needed'
          % (args.cameras, args.fps, result['images_per_second'], result['gops_needed']))
    if args.budget_gops is not None:
        print('Budget %.1f GOPS: %s (%.0f%% used)' % (
            args.budget_gops, 'fits' if result['fits'] else 'DOES NOT FIT',
            100 * result['gops_needed'] / args.budget_gops))
    return 0


if __name__ == '__main__':
    sys.exit(main())
