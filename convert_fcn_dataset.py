"""Converts a segmentation dataset split (image/label pairs) into TFRecords. Run once per split.

    python convert_fcn_dataset.py --dataset_format camvid --data_dir DIR --split val \
        --output_path val.record
    python convert_fcn_dataset.py --dataset_format voc --data_dir VOCdevkit/VOC2012 --split train \
        --output_path fcn_train.record --num_workers 2
    python convert_fcn_dataset.py --verify --output_path val.record \
        --config configs/camvid_fcn8s.yaml

Labels are stored as PNG train ids with void mapped to 255, following the dataset config
(num_classes, void_label, label_map, label_offset, color_map). Unusable pairs are skipped and
listed (--strict: the run fails instead); a report is written to OUTPUT_PATH.report.json. An
earlier conversion at OUTPUT_PATH is replaced only with --overwrite. SIGTERM stops a conversion
cleanly (its temporary files removed, exit status 143).
"""
import contextlib
import os
import signal
import sys

from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from tqdm import tqdm  # noqa: E402

from utils.cli import job_parser, list_of, non_negative_int, run_job  # noqa: E402
from utils.config import resolve_config  # noqa: E402
from utils.data.conversion import (check_output_path, convert_pairs,  # noqa: E402
                                   make_label_spec)
from utils.data.dataset_page import dataset_page_path  # noqa: E402
from utils.data.layouts import DEFAULT_CONFIGS, FORMATS, find_pairs  # noqa: E402
from utils.data.pixels import MAX_IMAGE_PIXELS, PIXELS_FLAG  # noqa: E402
from utils.data.records import report_path, resolve_record_paths, verify_records  # noqa: E402
from utils.errors import ConfigError  # noqa: E402
from utils.visualization import make_palette  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NEEDS = {'folders': ['image_dir', 'label_dir'], 'list': ['list_file']}
EXIT_SIGTERM = 128 + signal.SIGTERM  # the shell's status for a job ended by SIGTERM


class Terminated(BaseException):
    """SIGTERM as an exception. A BaseException, as KeyboardInterrupt is, so that no `except
    Exception` on its way up swallows it, while every `finally` and atomic write's cleanup
    runs (the part files and temporaries are removed, earlier output is untouched)."""


def _raise_terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the run at once
    raise Terminated()


@contextlib.contextmanager
def sigterm_raises():
    """Within the block, SIGTERM raises Terminated in the main thread."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def parse_args(argv=None):
    p = job_parser(__doc__)
    p.add_argument('--dataset_format', choices=FORMATS)
    p.add_argument('--data_dir', help='dataset root (list format: root of relative paths)')
    p.add_argument('--split', help='split name, e.g. train, val, trainaug, training')
    p.add_argument('--image_dir', help='images folder (folders format)')
    p.add_argument('--label_dir', help='labels folder, same file stems (folders format)')
    p.add_argument('--list_file', help='text file of "image label" lines (list format)')
    p.add_argument('--output_path', required=True, help='TFRecord file to write (or verify)')
    p.add_argument('--config', help='dataset config YAML (default: the one shipped for the format)')
    p.add_argument('--num_classes', type=int, help='overrides the config')
    p.add_argument('--void_label', type=int, help='on-disk label value of void pixels; '
                   'overrides the config')
    p.add_argument('--label_map', help='on-disk id -> train id, e.g. 0:0,255:1 for binary masks '
                   'stored as 0/255; overrides the config')
    p.add_argument('--allow_lossy_labels', action='store_true',
                   help='accept JPEG label files (their compression can change class ids at edges)')
    p.add_argument('--num_shards', type=int, default=1, help='output files (PATH-0000K-of-0000N)')
    p.add_argument('--num_workers', type=int, default=1, help='parallel reader processes')
    p.add_argument('--min_size', type=list_of(int, count=2, minimum=1, example='224,320'),
                   help='HEIGHT,WIDTH: skip smaller images (e.g. the crop size)')
    p.add_argument('--strict', action='store_true', help='fail, writing nothing, if any pair is '
                   'unusable')
    p.add_argument(PIXELS_FLAG, type=non_negative_int, default=MAX_IMAGE_PIXELS,
                   help='skip images and labels of more pixels than this (read from their '
                   'headers, before decoding); 0: no limit (default: %(default)s)')
    p.add_argument('--overwrite', action='store_true', help='replace an earlier conversion at '
                   'OUTPUT_PATH (its record file or shards and its report)')
    p.add_argument('--verify', action='store_true', help='read OUTPUT_PATH back and check it')
    return p.parse_args(argv)


def dataset_config(args):
    """The dataset config: --config, else the format's shipped one, with flag overrides."""
    path = args.config
    if not path and args.dataset_format in DEFAULT_CONFIGS:
        path = os.path.join(HERE, DEFAULT_CONFIGS[args.dataset_format])
    overrides = {k: str(getattr(args, k)) for k in ('num_classes', 'void_label', 'label_map')
                 if getattr(args, k) is not None}
    if not path and 'num_classes' not in overrides:
        raise ConfigError('the number of classes is unknown: give --config or --num_classes')
    # The class names and colours draw dataset.html; an overridden class count leaves them out.
    return resolve_config(path, overrides, class_table='num_classes' not in overrides)


def check_args(args):
    if args.verify:
        return
    if not args.dataset_format:
        raise ConfigError('--dataset_format is required (one of %s)' % ', '.join(FORMATS))
    needed = NEEDS.get(args.dataset_format, ['data_dir', 'split'])
    missing = ['--' + n for n in needed if not getattr(args, n)]
    if missing:
        raise ConfigError('--dataset_format %s needs %s'
                          % (args.dataset_format, ', '.join(missing)))
    if args.num_shards < 1 or args.num_workers < 1:
        raise ConfigError('--num_shards and --num_workers must be >= 1')


def verify(args, config):
    result = verify_records(resolve_record_paths(args.output_path), config.num_classes)
    print('Verified %d records in %s: %d problems'
          % (result['records'], args.output_path, len(result['errors'])))
    for error in result['errors']:
        print('  ' + error)
    return 1 if result['errors'] or not result['records'] else 0


def convert(args, config):
    check_output_path(args.output_path, args.overwrite)  # refused before any reading
    pairs = find_pairs(args.dataset_format, data_dir=args.data_dir, split=args.split,
                       image_dir=args.image_dir, label_dir=args.label_dir,
                       list_file=args.list_file)
    if not pairs:
        raise ConfigError('no image/label pairs found for --dataset_format %s'
                          % args.dataset_format)
    spec = make_label_spec(config.num_classes, config.void_label, config.label_map,
                           config.label_map_default, config.label_offset, config.color_map,
                           args.min_size, args.allow_lossy_labels, args.max_image_pixels)
    print('Converting %d pairs (%d classes) to %s with %d worker(s)'
          % (len(pairs), config.num_classes, args.output_path, args.num_workers))
    with sigterm_raises(), tqdm(total=len(pairs), unit='pair', file=sys.stderr) as bar:
        report = convert_pairs(pairs, args.output_path, spec, args.num_shards,
                               args.num_workers, args.strict, overwrite=args.overwrite,
                               log=lambda message: tqdm.write(message, file=sys.stderr),
                               progress=bar.update, class_names=config.class_names,
                               palette=make_palette(config.class_colors, config.num_classes))
    print('Wrote %d of %d pairs to %s (%.1f images/s); skipped %d. Report: %s; look at the '
          'data before training: open %s'
          % (report['pairs_written'], report['pairs_found'], ', '.join(report['output_paths']),
             report['images_per_second'], report['pairs_skipped'],
             report_path(args.output_path), dataset_page_path(args.output_path)))
    return 0


def main(argv=None):
    args = parse_args(argv)

    def work():
        check_args(args)
        config = dataset_config(args)
        return verify(args, config) if args.verify else convert(args, config)

    try:
        return run_job(work)
    except Terminated:  # raised in the conversion; its cleanups (`finally`, atomic writes) ran
        print('interrupted (SIGTERM): the conversion to %s stopped and its temporary files '
              'were removed' % args.output_path, file=sys.stderr)
        return EXIT_SIGTERM


if __name__ == '__main__':
    sys.exit(main())
