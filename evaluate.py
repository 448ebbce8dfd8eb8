"""Evaluates a training run's checkpoint on a whole TFRecord split at the images' own sizes.

    python evaluate.py --run_dir runs/camvid --dataset camvid_val.record --output_dir eval_out --crf
    python evaluate.py --run_dir runs/camvid --dataset val.record --output_dir out \
        --scales 0.75,1,1.25 --flip --draw worst --num_draw 10
    python evaluate.py --run_dir runs/camvid --dataset val.record --output_dir out --crf_search 20

Writes report.html (the whole story on one page: scores, per class with boundary F,
confusion, calibration, the annotations that look wrong, training, the worst and best images,
settings), metrics.json, confusion.csv, confusion.png, per_class.md, per_image.csv,
reliability.png, suspect_labels.csv and, per drawn image, the five JPEGs (image, annotation,
prediction, CRF prediction, overlay) under images/. Two-class runs (KITTI road) also get MaxF
and AP.
"""
import argparse
import dataclasses
import json
import os
import time
import sys

import tqdm

from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from utils.cli import (add_run_flags, job_parser, list_of,  # noqa: E402
                       non_negative_float, non_negative_int, output_folder, positive_int,
                       probability, run_job)
from utils.config import CRF_SEARCH_KEYS  # noqa: E402
from utils.crf import CrfPool  # noqa: E402
from utils.data.pixels import MAX_IMAGE_PIXELS, PIXELS_FLAG  # noqa: E402
from utils.errors import ConfigError  # noqa: E402
from utils.evaluation.crf_search import (collect_probabilities, crf_search,  # noqa: E402
                                         format_search_table, searched_crf_settings,
                                         with_crf_settings)
from utils.evaluation.boundary import DEFAULT_TOLERANCE  # noqa: E402
from utils.evaluation.calibration import write_reliability_png  # noqa: E402
from utils.evaluation.metrics import percent  # noqa: E402
from utils.evaluation.reports import (SUSPECTS_FILENAME, class_names_of,  # noqa: E402
                                      per_class_markdown, write_reports, write_suspects)
from utils.evaluation.suspects import (DEFAULT_CONFIDENCE, DEFAULT_MIN_AREA,  # noqa: E402
                                       SuspectFinder)
from utils.evaluation.scoring import data_warnings, evaluate, spread_out  # noqa: E402
from utils.fileio import atomic_write_text  # noqa: E402
from utils.evaluation.binary import positive_class_of  # noqa: E402
from utils.evaluation.report_page import write_report_page  # noqa: E402
from utils.rundir import PLOT_FILENAME, RunDir, load_run  # noqa: E402
from utils.training.monitoring import plot_progress, read_jsonl  # noqa: E402
from utils.runtime import code_version, setup_tensorflow  # noqa: E402
from utils.visualization import SAMPLE_KINDS, make_palette, write_sample_jpegs  # noqa: E402

floats = list_of(float, example="3,5,10")
# The report's galleries pick their images, spread apart in record order, from this many times
# as many worst (best) candidates.
GALLERY_CANDIDATES = 3
# The CRF search's grid when no flag gives one (crf_gaussian_compat: the config's value).
SEARCH_GRID = {'crf_bilateral_compat': (3, 5, 10), 'crf_bilateral_sxy': (30, 60, 90),
               'crf_bilateral_srgb': (3, 5, 13)}


def parse_args(argv=None):
    p = job_parser(__doc__)
    add_run_flags(p)
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
    p.add_argument('--gallery', type=non_negative_int, default=4, metavar='N',
                   help='report.html shows the N worst and N best images by mIoU (drawn '
                   'whatever --draw says)')
    p.add_argument('--positive_class', metavar='NAME_OR_INDEX',
                   help='two-class scores (MaxF, AP, ...) of this class against the rest '
                   '(default: road, or class 1, for two-class runs; none otherwise)')
    p.add_argument('--boundary_tolerance', type=non_negative_float,
                   default=DEFAULT_TOLERANCE, metavar='PIXELS',
                   help='boundary F-score: a predicted boundary pixel counts when an annotated '
                   'one is this close, in pixels at 360x480, scaled with the image diagonal '
                   '(default %(default)g)')
    p.add_argument('--suspect_confidence', type=probability, default=DEFAULT_CONFIDENCE,
                   metavar='P', help='annotations that look wrong: regions where the model gives '
                   'another class at least this probability (default %(default)g: see README '
                   '"Know your data")')
    p.add_argument('--suspect_min_area', type=positive_int, default=DEFAULT_MIN_AREA,
                   metavar='PIXELS', help='... of at least this many pixels (default '
                   '%(default)d)')
    p.add_argument('--crf_from', metavar='CRF_SEARCH_JSON',
                   help='score with the CRF at the best setting of a crf_search.json')
    p.add_argument(PIXELS_FLAG, type=non_negative_int, default=MAX_IMAGE_PIXELS,
                   help='skip (and name) images of more pixels than this (0: no limit)')
    p.add_argument('--crf_search', type=non_negative_int, default=0, metavar='N',
                   help='grid-search the CRF on the first N images instead of evaluating')
    for key in CRF_SEARCH_KEYS:
        p.add_argument('--' + key, type=floats, metavar='VALUE[,VALUE...]',
                       help='one value: evaluate with it; with --crf_search, the values to try '
                       '(default: %s)' % (','.join('%g' % v for v in SEARCH_GRID[key])
                                          if key in SEARCH_GRID else 'the config\'s'))
    args = p.parse_args(argv)
    several = [k for k in CRF_SEARCH_KEYS if len(getattr(args, k) or ()) > 1]
    if several and not args.crf_search:
        p.error('--%s: several values are a grid for --crf_search N; give one value to '
                'evaluate with it' % several[0])
    return args


def run_crf_search(args, config, checkpoint):
    with CrfPool() as crf_pool:  # its processes before the session's threads
        samples = collect_probabilities(config, checkpoint, args.dataset, args.crf_search)
        grid = {key: getattr(args, key) or SEARCH_GRID.get(key) for key in CRF_SEARCH_KEYS}
        result = crf_search(samples, config.num_classes, config.crf_params(), grid, crf_pool)
    path = os.path.join(args.output_dir, 'crf_search.json')
    atomic_write_text(path, json.dumps(result, indent=2))
    best = result['best']
    print(format_search_table(result))
    print('CRF search on %d images: without CRF mIoU %s; best %s: mIoU %s (gain %+.1f points). '
          'Written to %s' % (len(samples), percent(result['no_crf_mean_iou']), ', '.join(
              '%s %g' % (key, best[key]) for key in CRF_SEARCH_KEYS), percent(best['mean_iou']),
              100 * result['gain'], path))


def run_evaluation(args, config, checkpoint, checkpoint_why):
    """Scores the split, draws the chosen images, writes the reports and report.html and
    prints the table."""
    palette = make_palette(config.class_colors, config.num_classes)
    pictures = {}  # record -> {kind: path relative to the output dir}
    stems = set()

    def draw(record, sample):
        image, label, prediction, crf_prediction, filename = sample
        if record in pictures:
            return
        stem = os.path.splitext(os.path.basename(filename))[0]
        if stem in stems:  # two records of one file name (a/x.png, b/x.png) draw apart
            stem = '%s_record%d' % (stem, record)
        stems.add(stem)
        paths = write_sample_jpegs(os.path.join(args.output_dir, 'images'), stem, image, label,
                                   prediction, crf_prediction, palette, config.overlay_alpha,
                                   class_names_of(config))
        pictures[record] = {kind: os.path.relpath(path, args.output_dir)
                            for kind in SAMPLE_KINDS for path in paths
                            if path.endswith('_%s.jpg' % kind)}

    num_worst = args.num_draw if args.draw == 'worst' else 0
    names = class_names_of(config)
    suspects = SuspectFinder(config.num_classes, palette, names, args.suspect_confidence,
                             args.suspect_min_area)
    print('Evaluating %s on %s' % (checkpoint, args.dataset))
    with CrfPool(workers=None if config.crf else 1) as crf_pool:  # before the session
        result, rows, kept = evaluate(
            config, checkpoint, args.dataset, args.num_images, args.scales, args.flip,
            max(num_worst, GALLERY_CANDIDATES * args.gallery),
            on_image=draw if args.draw == 'all' else None, crf_pool=crf_pool,
            max_pixels=args.max_image_pixels, best=GALLERY_CANDIDATES * args.gallery,
            positive_class=positive_class_of(config, args.positive_class),
            boundary_tolerance=args.boundary_tolerance, calibration=True, suspects=suspects,
            progress=image_bar)
    gap = result['num_images'] // (GALLERY_CANDIDATES * 2 * max(args.gallery, 1))
    worst = spread_out(kept['worst'], args.gallery, gap)
    best = spread_out(kept['best'], args.gallery, gap, taken={r for r, _ in worst})
    for record, sample in kept['worst'][:num_worst] + worst + best:
        draw(record, sample)
    audit = {'reliability': write_reliability_png(args.output_dir, result['calibration']),
             'suspects': {'shown': write_suspects(args.output_dir, suspects),
                          'total': len(suspects.rows), 'csv': SUSPECTS_FILENAME,
                          'setting': {'confidence': args.suspect_confidence,
                                      'min_area': args.suspect_min_area}}}
    write_reports(args.output_dir, result, rows, names, {
        'class_names': names, 'checkpoint': checkpoint, 'dataset': args.dataset,
        'scales': list(args.scales), 'flip': args.flip,
        'suspects': {'confidence': args.suspect_confidence, 'min_area': args.suspect_min_area,
                     'regions': len(suspects.rows)}})
    gallery = {'worst': [record for record, _ in worst], 'best': [record for record, _ in best]}
    page = write_report_page(args.output_dir, 'Evaluation of %s' % args.run_dir, result, rows,
                             names, palette, gallery, pictures,
                             report_settings(args, config, checkpoint, result),
                             training_story(args, checkpoint_why), audit,
                             header=(config.dataset_name, args.dataset,
                                     time.strftime('evaluated %Y-%m-%d %H:%M'),
                                     'code %s' % code_version()))
    print(per_class_markdown(result, names))
    for line in ['warning: ' + w for w in data_warnings(result['data'])] + binary_lines(
            result, names):
        print(line)
    print(score_line(result))
    print('Boundary F %s (%g px at 360x480), calibration error (ECE) %s; %d region(s) '
          'where the annotation looks wrong in %s'
          % (percent(result['boundary']['mean_boundary_f']), args.boundary_tolerance,
             percent(result['calibration']['ece']), len(suspects.rows),
             os.path.join(args.output_dir, SUSPECTS_FILENAME)))
    print('Written to %s (open %s)' % (args.output_dir, page))


def score_line(result):
    """The console's summary, in percent as report.html and per_class.md give them."""
    scores = '; '.join(
        '%s: mIoU %s, pixel accuracy %s, mean accuracy %s, fwIoU %s' % (
            setting, percent(r['mean_iou']), percent(r['pixel_accuracy']),
            percent(r['mean_accuracy']), percent(r['fw_iou']))
        for setting, r in ([('with CRF', result['crf'])] if 'crf' in result else [])
        + [('without CRF', result)])
    return '%d images, %s' % (result['num_images'], scores)


def image_bar(total):
    """A progress bar over the images scored (stderr); returns its step."""
    bar = tqdm.tqdm(total=total, unit='image', desc='Scoring', leave=False)

    def step():
        bar.update(1)
        if bar.n >= total:
            bar.close()
    return step


def report_settings(args, config, checkpoint, result):
    """[(name, value)] for report.html: what produced the scores."""
    crf = (', '.join('%s %g' % (k, v) for k, v in config.crf_params().items())
           if config.crf else 'off')
    data = result['data']
    return [('network', config.network_description()), ('checkpoint', checkpoint),
            ('input size', 'each image at its own size'),
            ('scales', ', '.join('%g' % s for s in args.scales)),
            ('flip', 'yes' if args.flip else 'no'), ('dense CRF', crf),
            ('record files', ', '.join(data['record_files'])),
            ('images scored', '%d of %d readable records' % (result['num_images'],
                                                               data['readable_records'])),
            ('damaged files', ', '.join(d['path'] for d in data['damaged_files']) or 'none')]


def training_story(args, checkpoint_why):
    """{'checkpoint_why', 'plot'}: the run's loss and validation mIoU drawn into the output
    folder (progress.png), when the run has a history."""
    run = RunDir(args.run_dir)
    history, validations = read_jsonl(run.history_path), read_jsonl(run.metrics_path)
    plot = None
    if history or validations:
        plot_progress(os.path.join(args.output_dir, PLOT_FILENAME), history, validations)
        plot = PLOT_FILENAME
    return {'checkpoint_why': checkpoint_why, 'plot': plot}


def binary_lines(result, names):
    """The two-class scores as a line, when computed."""
    binary = result.get('binary')
    if not binary or binary['max_f'] is None:
        return []
    return ['%s against the rest: MaxF %s, AP %s (at threshold %.3f: precision %s, recall %s, '
            'FPR %s, FNR %s)' % (
                names[binary['positive_class']], percent(binary['max_f']),
                percent(binary['average_precision']), binary['threshold'],
                percent(binary['precision']), percent(binary['recall']),
                percent(binary['fpr'] or 0), percent(binary['fnr']))]


def main(argv=None):
    args = parse_args(argv)
    setup_tensorflow()

    def work():
        messages = []
        config, checkpoint = load_run(args.run_dir, args.checkpoint, args.latest,
                                      log=lambda m: print(m) or messages.append(m))
        if args.crf_from and args.crf is False:
            raise ConfigError('--no-crf and --crf_from contradict each other; give one')
        settings = searched_crf_settings(args.crf_from) if args.crf_from else None
        if args.crf is not None:
            config = dataclasses.replace(config, crf=args.crf)
        if settings:
            config = with_crf_settings(config, settings)
        given = {key: getattr(args, key) for key in CRF_SEARCH_KEYS if getattr(args, key)}
        if given and args.crf is False:
            raise ConfigError('--no-crf and --%s contradict each other; give one'
                              % list(given)[0])
        if given and not args.crf_search:  # one value of a CRF setting: evaluate with it
            config = dataclasses.replace(config, crf=True,
                                         **{key: values[0] for key, values in given.items()})
        for key, values in given.items():  # every value of a search grid in range too
            for value in values:
                dataclasses.replace(config, **{key: value})
        output_folder(args.output_dir, '--output_dir')
        if args.crf_search:
            run_crf_search(args, config, checkpoint)
        else:
            run_evaluation(args, config, checkpoint, messages[-1])

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
