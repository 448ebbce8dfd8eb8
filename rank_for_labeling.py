"""Ranks unlabelled images by how unsure a model is of them: what to label next.

    python rank_for_labeling.py --run_dir runs/camvid --input new_photos/ --output_dir rank
    python rank_for_labeling.py --exported exported/camvid --input 'shots/*.jpg' \
        --output_dir rank --top 50 --tile 512     # huge images at full resolution

Writes to_label.csv (every image: rank, mean uncertainty, which image it duplicates) and
to_label.html (the top N with image, prediction and uncertainty map; offline). The score is the
mean normalised entropy of the model's probabilities; near-duplicates (copies, consecutive
frames) of an image ranked higher are listed but take no place in the top N
(utils.inference.ranking). Files that are not readable images are skipped and named.
"""
import os
import sys

from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from tqdm import tqdm  # noqa: E402

from utils.cli import add_run_flags, job_parser, output_folder, positive_int, run_job  # noqa: E402
from utils.deploy.exported import open_predictor  # noqa: E402
from utils.errors import DataError  # noqa: E402
from utils.inference.flags import add_size_flags, check_sizes  # noqa: E402
from utils.inference.image_files import (check_output_apart, expand_inputs,  # noqa: E402
                                         readable_images)
from utils.inference.labeling_page import write_ranking  # noqa: E402
from utils.inference.ranking import difference_hash, mean_uncertainty, rank_images  # noqa: E402
from utils.inference.tiling import Tiling  # noqa: E402
from utils.runtime import setup_tensorflow  # noqa: E402


def parse_args(argv=None):
    p = job_parser(__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    add_run_flags(p, run_dir_to=source)
    source.add_argument('--exported', help='an export_model.py folder or one of its models')
    p.add_argument('--input', nargs='+', required=True,
                   help='unlabelled images: files, folders or glob patterns')
    p.add_argument('--output_dir', required=True)
    p.add_argument('--top', type=positive_int, default=20, metavar='N',
                   help='how many images to propose (and draw) (default %(default)d)')
    add_size_flags(p)
    args = p.parse_args(argv)
    check_sizes(p, args)
    args.scales, args.flip = (1.0,), False
    return args


def main(argv=None):
    args = parse_args(argv)
    setup_tensorflow()

    def work():
        skipped = []

        def skip(path, reason):
            tqdm.write('skipped %s: %s' % (path, reason), file=sys.stderr)
            skipped.append(path)

        paths = expand_inputs(args.input, skip)
        check_output_apart(paths, args.output_dir)
        output_folder(args.output_dir, '--output_dir')
        predictor = open_predictor(args.run_dir, args.exported, args.checkpoint, args.latest,
                                   log=lambda m: print(m, file=sys.stderr))
        tiling = Tiling(args.tile, args.tile_overlap) if args.tile else None

        # 1. Score every image (only numbers are kept: any number of images fits).
        scored = []
        items = [(p, p) for p in paths]
        for path, _, image in readable_images(tqdm(items, unit='image', file=sys.stderr,
                                                   desc='scoring'), args.max_image_pixels, skip):
            scored.append((path, mean_uncertainty(predictor, image, args.max_side, tiling),
                           difference_hash(image)))
        if not scored:
            raise DataError('none of the %d input(s) is a readable image (%s)'
                            % (len(paths), ', '.join(paths[:3])))
        # 2. Rank, and draw the top N again for the page.
        rows = rank_images(scored, args.top)
        page = write_ranking(args.output_dir, rows, predictor, args.max_side, tiling, skipped,
                             progress=lambda items: tqdm(items, unit='image', file=sys.stderr,
                                                         desc='drawing'))
        duplicates = sum(1 for r in rows if r['duplicate_of'])
        print('Ranked %d images (%d near-duplicate(s), %d skipped); the %d to label first are '
              'in %s (open %s)' % (len(rows), duplicates, len(skipped),
                                   sum(r['selected'] for r in rows),
                                   os.path.join(args.output_dir, 'to_label.csv'), page))
        return 0

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
