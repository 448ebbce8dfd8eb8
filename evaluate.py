"""Evaluates a training run's checkpoint on a whole TFRecord split at the images' own sizes.

    python evaluate.py --run_dir runs/camvid --dataset camvid_val.record --output_dir eval_out --crf
    python evaluate.py --run_dir runs/camvid --dataset val.record --output_dir out \
        --scales 0.75,1,1.25 --flip --draw worst --num_draw 10
    python evaluate.py --run_dir runs/camvid --dataset val.record --output_dir out --crf_search 20

Writes metrics.json, confusion.csv, confusion.png, per_class.md, per_image.csv and, per drawn
image, the five JPEGs (image, annotation, prediction, CRF prediction, overlay) under images/.
"""
import argparse
import dataclasses
import json
import os
import sys

from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from utils.cli import (job_parser, list_of, non_negative_int, output_folder,  # noqa: E402
                       run_job)
from utils.crf import CrfPool  # noqa: E402
from utils.data.pixels import MAX_IMAGE_PIXELS, PIXELS_FLAG  # noqa: E402
from utils.errors import ConfigError  # noqa: E402
from utils.evaluation.crf_search import (collect_probabilities, crf_search,  # noqa: E402
                                         format_search_table, searched_crf_settings,
                                         with_crf_settings)
from utils.evaluation.reports import class_names_of, per_class_markdown, write_reports  # noqa: E402
from utils.evaluation.scoring import evaluate  # noqa: E402
from utils.fileio import atomic_write_text  # noqa: E402
from utils.rundir import load_run  # noqa: E402
from utils.runtime import setup_tensorflow  # noqa: E402
from utils.visualization import make_palette, write_sample_jpegs  # noqa: E402

floats = list_of(float, example="3,5,10")


def parse_args(argv=None):
    p = job_parser(__doc__)
    p.add_argument('--run_dir', required=True, help='a training --output_dir')
    p.add_argument('--checkpoint', help='checkpoint prefix (default: the run\'s best by '
                   'validation mIoU, else its latest)')
    p.add_argument('--latest', action='store_true',
                   help='use the run\'s latest checkpoint, not its best')
    p.add_argument('--dataset', required=True, help='TFRecord file(s), comma-separated or glob')
    p.add_argument('--output_dir', required=True)
    p.add_argument('--crf', action=argparse.BooleanOptionalAction, default=None,
                   help='also score (and draw) after dense CRF (default: the run config\'s crf)')
    p.add_argument('--scales', type=list_of(float, minimum=0.05, example='0.75,1,1.25'),
                   default=(1.0,), help='e.g. 0.75,1,1.25')
    p.add_argument('--flip', action='store_true', help='average with the flipped image')
    p.add_argument('--num_images', type=non_negative_int, default=0,
                   help='first N records only (0 = all)')
    p.add_argument('--draw', choices=('all', 'worst', 'none'), default='all',
                   help='which images get the five JPEGs')
    p.add_argument('--num_draw', type=non_negative_int, default=10,
                   help='how many with --draw worst')
    p.add_argument('--crf_from', metavar='CRF_SEARCH_JSON',
                   help='score with the CRF at the best setting of a crf_search.json')
    p.add_argument(PIXELS_FLAG, type=non_negative_int, default=MAX_IMAGE_PIXELS,
                   help='skip (and name) images of more pixels than this (0: no limit)')
    p.add_argument('--crf_search', type=non_negative_int, default=0, metavar='N',
                   help='grid-search the CRF on the first N images instead of evaluating')
    p.add_argument('--crf_compats', type=floats, default=(3, 5, 10))
    p.add_argument('--crf_sxys', type=floats, default=(30, 60, 90))
    p.add_argument('--crf_srgbs', type=floats, default=(3, 5, 13))
    p.add_argument('--crf_gaussian_compats', type=floats, default=None,
                   help='smoothness kernel weights to try (default: the config\'s)')
    return p.parse_args(argv)


def run_crf_search(args, config, checkpoint):
    with CrfPool() as crf_pool:  # its processes before the session's threads
        samples = collect_probabilities(config, checkpoint, args.dataset, args.crf_search)
        result = crf_search(samples, config.num_classes, config.crf_params(),
                            args.crf_compats, args.crf_sxys, args.crf_srgbs,
                            args.crf_gaussian_compats, crf_pool)
    path = os.path.join(args.output_dir, 'crf_search.json')
    atomic_write_text(path, json.dumps(result, indent=2))
    best = result['best']
    print(format_search_table(result))
    print('CRF search on %d images: without CRF mIoU %.4f; best crf_bilateral_compat %g, '
          'crf_bilateral_sxy %g, crf_bilateral_srgb %g, crf_gaussian_compat %g: mIoU %.4f '
          '(gain %+.4f). Written to %s'
          % (len(samples), result['no_crf_mean_iou'], best['compat'], best['sxy'], best['srgb'],
             best['gaussian_compat'], best['mean_iou'], result['gain'], path))


def run_evaluation(args, config, checkpoint):
    """Scores the split, draws the chosen images, writes the reports and prints the table."""
    palette = make_palette(config.class_colors, config.num_classes)
    image_dir = os.path.join(args.output_dir, 'images')

    def draw(sample):
        image, label, prediction, crf_prediction, filename = sample
        write_sample_jpegs(image_dir, os.path.splitext(os.path.basename(filename))[0],
                           image, label, prediction, crf_prediction, palette,
                           config.overlay_alpha)

    worst = {'all': -1, 'worst': args.num_draw, 'none': 0}[args.draw]
    print('Evaluating %s on %s' % (checkpoint, args.dataset))
    with CrfPool(workers=None if config.crf else 1) as crf_pool:  # before the session
        result, rows, kept = evaluate(config, checkpoint, args.dataset, args.num_images,
                                      args.scales, args.flip, worst,
                                      on_image=draw if worst < 0 else None, crf_pool=crf_pool,
                                      max_pixels=args.max_image_pixels)
    for sample in kept:
        draw(sample)
    names = class_names_of(config)
    write_reports(args.output_dir, result, rows, names, {
        'class_names': names, 'checkpoint': checkpoint, 'dataset': args.dataset,
        'scales': list(args.scales), 'flip': args.flip})
    print(per_class_markdown(result, names))
    for line in data_warnings(result['data']):
        print(line)
    print('%d images: mIoU %.4f, pixel accuracy %.4f, mean accuracy %.4f, fwIoU %.4f%s'
          % (result['num_images'], result['mean_iou'], result['pixel_accuracy'],
             result['mean_accuracy'], result['fw_iou'],
             ' | with CRF: mIoU %.4f' % result['crf']['mean_iou'] if 'crf' in result else ''))
    print('Written to %s' % args.output_dir)


def data_warnings(data):
    """Lines that tell the user the score is not of the whole record set (damaged files,
    records skipped), or nothing."""
    lines = ['warning: %s is damaged: only its first %d record(s) were scored (%s)'
             % (d['path'], d['readable_records'], d['damage']) for d in data['damaged_files']]
    if data['skipped_records']:
        lines.append('warning: %d record(s) skipped: %s' % (
            len(data['skipped_records']), '; '.join(data['skipped_records'][:5])))
    return lines


def main(argv=None):
    args = parse_args(argv)
    setup_tensorflow()

    def work():
        config, checkpoint = load_run(args.run_dir, args.checkpoint, args.latest)
        if args.crf_from and args.crf is False:
            raise ConfigError('--no-crf and --crf_from contradict each other; give one')
        settings = searched_crf_settings(args.crf_from) if args.crf_from else None
        if args.crf is not None:
            config = dataclasses.replace(config, crf=args.crf)
        if settings:
            config = with_crf_settings(config, settings)
        output_folder(args.output_dir, '--output_dir')
        if args.crf_search:
            run_crf_search(args, config, checkpoint)
        else:
            run_evaluation(args, config, checkpoint)

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
