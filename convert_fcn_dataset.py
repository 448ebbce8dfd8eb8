"""Converts a segmentation dataset split (image/label pairs) into one TFRecord file. Run once.

    python convert_fcn_dataset.py --dataset_format camvid --data_dir DIR --split val --output_path val.record
    python convert_fcn_dataset.py --dataset_format voc --data_dir VOCdevkit/VOC2012 --split train \
        --output_path fcn_train.record

Labels are stored as PNG class indices with the dataset's void value mapped to 255. Pairs that
cannot be used are skipped and listed; a report is written to OUTPUT_PATH.report.json.
"""
import argparse
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from utils.config import ConfigError, load_yaml
from utils.conversion import REPORT_SUFFIX, convert_pairs
from utils.datasets import DEFAULT_CONFIGS, FORMATS, find_pairs

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset_format', required=True, choices=FORMATS)
    p.add_argument('--data_dir', help='dataset root (camvid, voc; list: root of relative paths)')
    p.add_argument('--split', help='split name, e.g. train or val (camvid, voc)')
    p.add_argument('--image_dir', help='images folder (folders format)')
    p.add_argument('--label_dir', help='labels folder, same file stems (folders format)')
    p.add_argument('--list_file', help='text file of "image label" lines (list format)')
    p.add_argument('--output_path', required=True, help='TFRecord file to write')
    p.add_argument('--config', help='dataset config YAML giving num_classes and void_label '
                   '(default: the one shipped for the format)')
    p.add_argument('--num_classes', type=int, help='overrides the config')
    p.add_argument('--void_label', type=int, help='label value of void pixels on disk; '
                   'overrides the config')
    p.add_argument('--strict', action='store_true', help='fail if any pair is unusable')
    return p.parse_args(argv)


def dataset_description(args):
    """(num_classes, void_label) from --config, the format's shipped config, or the flags."""
    config_path = args.config or (os.path.join(HERE, DEFAULT_CONFIGS[args.dataset_format])
                                  if args.dataset_format in DEFAULT_CONFIGS else None)
    config = load_yaml(config_path) if config_path else {}
    num_classes = args.num_classes if args.num_classes is not None else config.get('num_classes')
    void_label = args.void_label if args.void_label is not None else config.get('void_label', 255)
    if not num_classes:
        raise ConfigError('the number of classes is unknown: give --config or --num_classes')
    return int(num_classes), int(void_label)


def required(args, *names):
    missing = ['--' + n for n in names if not getattr(args, n)]
    if missing:
        raise ConfigError('--dataset_format %s needs %s' % (args.dataset_format, ', '.join(missing)))


def main(argv=None):
    args = parse_args(argv)
    try:
        required(args, *{'camvid': ['data_dir', 'split'], 'voc': ['data_dir', 'split'],
                         'folders': ['image_dir', 'label_dir'],
                         'list': ['list_file']}[args.dataset_format])
        num_classes, void_label = dataset_description(args)
        pairs = find_pairs(args.dataset_format, data_dir=args.data_dir, split=args.split,
                           image_dir=args.image_dir, label_dir=args.label_dir,
                           list_file=args.list_file)
        if not pairs:
            raise ConfigError('no image/label pairs found for %s' % args.dataset_format)
        print('Converting %d pairs (%d classes, void %d) to %s'
              % (len(pairs), num_classes, void_label, args.output_path))
        report = convert_pairs(pairs, args.output_path, num_classes, void_label, args.strict)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError, OSError) as e:
        print('error: %s' % e, file=sys.stderr)
        return 1
    print('Wrote %d of %d pairs to %s (%.1f images/s); skipped %d. Report: %s'
          % (report['pairs_written'], report['pairs_found'], args.output_path,
             report['images_per_second'], report['pairs_skipped'],
             args.output_path + REPORT_SUFFIX))
    for item in report['skipped']:
        print('  skipped %s: %s' % (os.path.basename(item['image']), item['reason']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
