"""Flags of the jobs that run a model on users' images (predict.py, rank_for_labeling.py): how
large images run (--max_side, --tile, --tile_overlap, the pixel limit)."""
from utils.data.pixels import MAX_IMAGE_PIXELS, PIXELS_FLAG
from utils.cli import non_negative_int
from utils.inference.image_files import CRF_MAX_PIXELS
from utils.inference.predictor import MIN_INPUT_SIDE
from utils.inference.tiling import default_overlap


def add_size_flags(p):
    """--max_side, --tile, --tile_overlap and the pixel limit: how large images run."""
    p.add_argument('--max_side', type=non_negative_int, default=1280,
                   help='run larger images at this many pixels (>= %d) on their longer side and '
                   'resize the result back, which bounds memory (0: full size; ignored with '
                   '--tile)' % MIN_INPUT_SIDE)
    p.add_argument('--tile', type=non_negative_int, metavar='SIZE',
                   help='images only (not videos): predict at full resolution by overlapping '
                   'SIZE x SIZE tiles (>= %d, e.g. 512), blended, row of tiles by row of '
                   'tiles, so that memory stays bounded on photos of any size (a 12000x9000 '
                   'photo through FCN-8s peaked at 2.3 GB with --tile 512); images smaller '
                   'than a tile run whole; --scales and --flip '
                   'apply per tile; with --crf the CRF runs on the whole blended image, which '
                   'is skipped with a line when above %.1f million pixels (the CRF would not '
                   'fit)' % (MIN_INPUT_SIDE, CRF_MAX_PIXELS / 1e6))
    p.add_argument('--tile_overlap', type=non_negative_int, metavar='PIXELS',
                   help='pixels by which neighbouring tiles overlap (< --tile; default: a '
                   'quarter of the tile)')
    p.add_argument(PIXELS_FLAG, type=non_negative_int, default=MAX_IMAGE_PIXELS,
                   help='skip images of more pixels than this (height x width, read from the '
                   'file\'s header before decoding), with a line each (0: no limit)')


def check_sizes(parser, args):
    """Refuses (argparse error, status 2) sizes the network cannot run, and sets the default
    tile overlap."""
    if 0 < args.max_side < MIN_INPUT_SIDE:
        parser.error('argument --max_side: %d is below %d, the smallest side the networks run '
                     '(0: full size)' % (args.max_side, MIN_INPUT_SIDE))
    if args.tile is None:
        if args.tile_overlap is not None:
            parser.error('argument --tile_overlap: applies with --tile SIZE')
        return
    if args.tile < MIN_INPUT_SIDE:
        parser.error('argument --tile: %d is below %d, the smallest side the networks run'
                     % (args.tile, MIN_INPUT_SIDE))
    if args.tile_overlap is None:
        args.tile_overlap = default_overlap(args.tile)
    if args.tile_overlap >= args.tile:
        parser.error('argument --tile_overlap: %d is not below the tile\'s %d pixels'
                     % (args.tile_overlap, args.tile))
