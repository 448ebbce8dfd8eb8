"""Exports a training run as a SavedModel (uint8 RGB image of any size in, class map and
per-class probabilities at the input size out, preprocessing included), checks that it agrees
with the checkpoint, and measures its latency.

    python export_model.py --run_dir runs/camvid --export_dir exported/camvid
    python export_model.py --run_dir runs/camvid --export_dir exported/camvid \
        --parity_images 'val/*.png' --benchmark_size 360,480
"""
import argparse
import sys

import cv2

from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from utils.cli import list_of, run_job  # noqa: E402
from utils.deploy.saved_model import (FORMATS, benchmark_latency,  # noqa: E402
                                      export_saved_model, load_exported, parity_check)
from utils.errors import ConfigError  # noqa: E402
from utils.inference.image_files import expand_inputs, read_rgb  # noqa: E402
from utils.inference.predictor import Predictor  # noqa: E402
from utils.rundir import load_run  # noqa: E402
from utils.runtime import setup_tensorflow  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--run_dir', required=True, help='a training --output_dir')
    p.add_argument('--checkpoint', help='checkpoint prefix (default: the run\'s best by '
                   'validation mIoU, else its latest)')
    p.add_argument('--latest', action='store_true',
                   help='use the run\'s latest checkpoint, not its best')
    p.add_argument('--export_dir', required=True, help='SavedModel folder to create')
    p.add_argument('--formats', type=list_of(str, example='saved_model,frozen_graph'),
                   default=('saved_model',), help='saved_model (always written), '
                   'frozen_graph (EXPORT_DIR/frozen_inference_graph.pb), onnx (EXPORT_DIR/'
                   'model.onnx, opset 13, through tf2onnx; run by onnxruntime), tflite '
                   '(EXPORT_DIR/model.tflite, builtin ops, needs --input_size; run by LiteRT)')
    p.add_argument('--input_size', type=list_of(int, count=2, minimum=32, example='320,480'),
                   help='HEIGHT,WIDTH of the TFLite model (images of other sizes are resized)')
    p.add_argument('--float16', action='store_true', help='TFLite with float16 weights')
    p.add_argument('--parity_images', nargs='*', default=[],
                   help='images, folders or globs to compare checkpoint and export on')
    p.add_argument('--benchmark_size', type=list_of(int, count=2, minimum=1, example='360,480'),
                   help='HEIGHT,WIDTH: report ms per image at batch 1')
    p.add_argument('--benchmark_batch', type=int, default=1)
    return p.parse_args(argv)


def check_format(args, config, checkpoint, model_format):
    """Parity with the checkpoint and latency of one exported format; returns a status."""
    model = load_exported(args.export_dir, model_format)
    size = getattr(model, 'input_shape', None)  # a model of one input size (TFLite)
    if args.parity_images:
        images = [read_rgb(p) for p in expand_inputs(args.parity_images)]
        images = [im if size is None else cv2.resize(im, size[::-1], interpolation=cv2.INTER_AREA)
                  for im in images if im is not None]
        differing = parity_check(Predictor(config, checkpoint), model, images)
        print('%s parity on %d images: %d pixels differ'
              % (model_format, len(images), sum(differing)))
        if any(differing):
            print('error: the exported %s disagrees with the checkpoint' % model_format,
                  file=sys.stderr)
            return 1
    if args.benchmark_size:
        height, width = size or args.benchmark_size
        ms = benchmark_latency(model, height, width, args.benchmark_batch)
        print('%s latency at %dx%d, batch %d: %.1f ms per image (%.1f images/s)'
              % (model_format, height, width, args.benchmark_batch, ms, 1000 / ms))
    return 0


def main(argv=None):
    args = parse_args(argv)
    setup_tensorflow()

    def work():
        unknown = sorted(set(args.formats) - set(FORMATS))
        if unknown:
            raise ConfigError('--formats: unknown %s; choose from %s'
                              % (', '.join(unknown), ', '.join(FORMATS)))
        config, checkpoint = load_run(args.run_dir, args.checkpoint, args.latest)
        export_saved_model(config, checkpoint, args.export_dir, args.formats, args.input_size,
                           args.float16)
        print('Exported %s to %s' % (checkpoint, args.export_dir))
        status = 0
        for model_format in ('saved_model',) + tuple(f for f in args.formats
                                                     if f != 'saved_model'):
            status = max(status, check_format(args, config, checkpoint, model_format))
        return status

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
