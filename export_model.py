"""Exports a training run for deployment (uint8 RGB image in, class map and per-class
probabilities out, preprocessing included) as a SavedModel and, on request, a frozen graph, ONNX
and TFLite; checks each against the checkpoint, measures its latency against a camera budget,
and writes EXPORT_DIR/export_report.json.

    python export_model.py --run_dir runs/camvid --export_dir exported/camvid
    python export_model.py --run_dir runs/cs7 --export_dir exported/cs7 --formats \
        saved_model,frozen_graph,onnx,tflite --input_size 320,480 --parity_images 'val/*.png' \
        --benchmark_size 320,480 --cameras 4 --fps 15
"""
import json
import os
import sys

import cv2

from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from utils.cli import (add_run_flags, image_size, job_parser, list_of,  # noqa: E402
                       non_negative_float, positive_int, run_job)
from utils.deploy.export import (FORMATS, PARITY_TOLERANCE, REPORT_FILENAME,  # noqa: E402
                                 benchmark_latency, compare_mean_iou, export_model, format_path,
                                 load_exported, parity_check, recommend_format,
                                 size_on_disk)
from utils.errors import ConfigError  # noqa: E402
from utils.data.pixels import MAX_IMAGE_PIXELS  # noqa: E402
from utils.evaluation.metrics import percent  # noqa: E402
from utils.fileio import atomic_write_text  # noqa: E402
from utils.inference.image_files import expand_inputs, read_rgb  # noqa: E402
from utils.inference.predictor import MIN_INPUT_SIDE, Predictor  # noqa: E402
from utils.rundir import load_run  # noqa: E402
from utils.runtime import cpu_class, setup_tensorflow  # noqa: E402


def parse_args(argv=None):
    p = job_parser(__doc__)
    add_run_flags(p)
    p.add_argument('--export_dir', required=True, help='SavedModel folder to create')
    p.add_argument('--formats', type=list_of(str, example='saved_model,frozen_graph'),
                   default=('saved_model',), help='saved_model (always written), '
                   'frozen_graph (EXPORT_DIR/frozen_inference_graph.pb), onnx (EXPORT_DIR/'
                   'model.onnx, opset 13, through tf2onnx; run by onnxruntime), tflite '
                   '(EXPORT_DIR/model.tflite, builtin ops, needs --input_size; run by LiteRT), '
                   'tflite_int8 (model_int8.tflite, full-integer, needs --calibration_record)')
    p.add_argument('--input_size', type=image_size(MIN_INPUT_SIDE, MAX_IMAGE_PIXELS),
                   help='HEIGHT,WIDTH of the TFLite model (images of other sizes are resized)')
    p.add_argument('--float16', action='store_true', help='TFLite with float16 weights')
    p.add_argument('--calibration_record', help='TFRecord(s) whose first images calibrate '
                   'tflite_int8 (e.g. training records)')
    p.add_argument('--validation_record', help='TFRecord(s) on which the report compares the '
                   'mIoU of tflite_int8 with the checkpoint\'s')
    p.add_argument('--cameras', type=positive_int, default=1,
                   help='cameras the deployment serves')
    p.add_argument('--fps', type=non_negative_float, default=15.0,
                   help='frames per second per camera (> 0)')
    p.add_argument('--parity_images', nargs='*', default=[],
                   help='images, folders or globs to compare checkpoint and export on')
    p.add_argument('--benchmark_size', type=image_size(MIN_INPUT_SIDE, MAX_IMAGE_PIXELS,
                                                       '360,480'),
                   help='HEIGHT,WIDTH: report ms per image at batch 1')
    p.add_argument('--benchmark_batch', type=positive_int, default=1)
    args = p.parse_args(argv)
    if not args.fps:
        p.error('argument --fps: a camera budget of 0 frames per second needs no model')
    return args


def check_format(args, config, predictor, model_format):
    """Size, parity with the checkpoint (`predictor`) and latency of one exported format: a
    report row."""
    model = load_exported(args.export_dir, model_format)
    size = getattr(model, 'input_shape', None)  # a model of one input size (TFLite)
    row = {'format': model_format,
           'bytes': size_on_disk(format_path(args.export_dir, model_format))}
    if args.parity_images:
        images = [read_rgb(p) for p in expand_inputs(args.parity_images)]
        images = [im if size is None else cv2.resize(im, size[::-1], interpolation=cv2.INTER_AREA)
                  for im in images if im is not None]
        differing = parity_check(predictor, model, images)
        pixels = sum(im.shape[0] * im.shape[1] for im in images)
        row.update(parity_images=len(images), differing_pixels=sum(differing),
                   differing_fraction=sum(differing) / max(pixels, 1))
        print('%s parity on %d images: %d pixels differ' % (model_format, len(images),
                                                            sum(differing)))
    if args.benchmark_size:
        height, width = size or args.benchmark_size
        ms = benchmark_latency(model, height, width, args.benchmark_batch)
        row.update(latency_size=[height, width], latency_ms=round(ms, 2),
                   images_per_second=round(1000 / ms, 2))
        print('%s latency at %dx%d, batch %d: %.1f ms per image (%.1f images/s)'
              % (model_format, height, width, args.benchmark_batch, ms, 1000 / ms))
    if model_format == 'tflite_int8' and args.validation_record:
        row['checkpoint_mean_iou'], row['mean_iou'] = compare_mean_iou(
            predictor, model, args.validation_record, size, config.num_classes)
        print('tflite_int8 mIoU %s vs the checkpoint\'s %s on %s at %dx%d'
              % (percent(row['mean_iou']), percent(row['checkpoint_mean_iou']),
                 args.validation_record, *size))
    return row


def print_report(report):
    """The report as a table, with the camera budget when latency was measured."""
    print('| format | size MB | differing pixels | ms/image | images/s |')
    print('|---|---|---|---|---|')
    for row in report['formats']:
        print('| %s | %.1f | %s | %s | %s |' % (
            row['format'], row['bytes'] / 2 ** 20,
            '%d (%.3f%%)' % (row['differing_pixels'], 100 * row['differing_fraction'])
            if 'differing_pixels' in row else '-',
            '%.1f' % row['latency_ms'] if 'latency_ms' in row else '-',
            '%.1f' % row['images_per_second'] if 'latency_ms' in row else '-'))
    if 'recommended' in report:
        choice = report['recommended']
        if choice['format']:
            print('Deploy on this machine (%s): %s, %.1f images/s (%s)' % (
                report['machine'], choice['format'], choice['images_per_second'],
                choice['why']))
        else:
            print('No format to recommend on this machine (%s): %s' % (report['machine'],
                                                                        choice['why']))
    if 'needed_images_per_second' in report:
        print('%d camera(s) x %g fps = %g images/s needed: %s' % (
            report['cameras'], report['fps'], report['needed_images_per_second'],
            ', '.join('%s %s' % (row['format'], 'meets it' if row['images_per_second']
                                 >= report['needed_images_per_second'] else 'does not')
                      for row in report['formats'] if 'images_per_second' in row)))


def main(argv=None):
    args = parse_args(argv)
    setup_tensorflow()

    def work():
        unknown = sorted(set(args.formats) - set(FORMATS))
        if unknown:
            raise ConfigError('--formats: unknown %s; choose from %s'
                              % (', '.join(unknown), ', '.join(FORMATS)))
        config, checkpoint = load_run(args.run_dir, args.checkpoint, args.latest)
        export_model(config, checkpoint, args.export_dir, args.formats, args.input_size,
                     args.float16, args.calibration_record)
        print('Exported %s to %s' % (checkpoint, args.export_dir))
        formats = ('saved_model',) + tuple(f for f in args.formats if f != 'saved_model')
        predictor = Predictor(config, checkpoint)  # the reference: one restore for all formats
        report = {'checkpoint': checkpoint, 'model': config.model,
                  'formats': [check_format(args, config, predictor, f) for f in formats],
                  'cameras': args.cameras, 'fps': args.fps}
        if args.benchmark_size:
            report['needed_images_per_second'] = args.cameras * args.fps
            report['machine'] = cpu_class()
            report['recommended'] = recommend_format(report['formats'])
        atomic_write_text(os.path.join(args.export_dir, REPORT_FILENAME),
                          json.dumps(report, indent=2))
        print_report(report)
        off = [row['format'] for row in report['formats']  # int8 is reported, not held to it
               if row.get('differing_fraction', 0) > PARITY_TOLERANCE
               and row['format'] != 'tflite_int8']
        if off:
            print('error: %s disagree(s) with the checkpoint on more than %.1f%% of the pixels'
                  % (', '.join(off), 100 * PARITY_TOLERANCE), file=sys.stderr)
            return 1
        return 0

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
