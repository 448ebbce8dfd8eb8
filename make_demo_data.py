"""Writes the built-in synthetic demo dataset (CamVid layout) for `make demo` and the tests.

    python make_demo_data.py --output_dir build/demo/data
"""
from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()  # the demo's labels are written with the records' constants

from utils.cli import job_parser  # noqa: E402
from utils.data.demo import write_demo_dataset  # noqa: E402


def main(argv=None):
    p = job_parser(__doc__)
    p.add_argument('--output_dir', required=True)
    p.add_argument('--num_train', type=int, default=48)
    p.add_argument('--num_val', type=int, default=8)
    p.add_argument('--height', type=int, default=96)
    p.add_argument('--width', type=int, default=128)
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    write_demo_dataset(a.output_dir, a.num_train, a.num_val, a.height, a.width, a.seed)
    print('Demo dataset written to %s' % a.output_dir)


if __name__ == '__main__':
    main()
