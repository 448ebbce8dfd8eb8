"""Converts Keras VGG16 ImageNet weights (.h5, e.g. vgg16_weights_tf_dim_ordering_tf_kernels.h5)
into a tf-slim vgg_16 checkpoint that train.py --checkpoint_path takes.

    python convert_keras_vgg16.py --h5 vgg16_weights_tf_dim_ordering_tf_kernels.h5 \
        --output_path vgg_16.ckpt
"""
import sys

from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from utils.cli import job_parser, run_job  # noqa: E402
from utils.runtime import setup_tensorflow  # noqa: E402
from utils.training.keras_vgg16 import (keras_to_slim, read_keras_vgg16,  # noqa: E402
                                        write_checkpoint)


def main(argv=None):
    p = job_parser(__doc__)
    p.add_argument('--h5', required=True, help='Keras VGG16 weights file')
    p.add_argument('--output_path', required=True, help='checkpoint prefix to write')
    args = p.parse_args(argv)
    setup_tensorflow()

    def work():
        variables = keras_to_slim(read_keras_vgg16(args.h5))
        path = write_checkpoint(variables, args.output_path)
        print('Wrote %d variables to %s' % (len(variables), path))

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
