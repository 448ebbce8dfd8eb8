"""Predicts class maps of your own images (any size or format) with a run or an exported model.

An exported model (`--exported`) is run as deployed, to check a deployment end to end.

    python predict.py --run_dir runs/camvid --input photo.jpg folder/ 'shots/*.png' \
        --output_dir out [--crf]
    python predict.py --exported exported/camvid --input folder/ --output_dir out
    python predict.py --run_dir runs/camvid --input clip.mp4 --output_dir out  # clip_overlay.mp4
    python predict.py --run_dir runs/camvid --input photo_12000x9000.jpg --output_dir out \
        --tile 512   # full resolution by overlapping 512x512 tiles, memory bounded

Per input NAME.ext: NAME_label.png (class indices, same size as the input), NAME_color.png
(class colours) and NAME_overlay.jpg. Preprocessing is the training's; runs on CPU or GPU.
"""
import os
import sys

from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from tqdm import tqdm  # noqa: E402

from utils.cli import (add_run_flags, job_parser, list_of,  # noqa: E402
                       non_negative_int, output_folder, positive_int, run_job)
from utils.crf import CrfPool  # noqa: E402
from utils.data.pixels import MAX_IMAGE_PIXELS, PIXELS_FLAG  # noqa: E402
from utils.deploy.exported import ExportedPredictor  # noqa: E402
from utils.errors import ConfigError, DataError  # noqa: E402
from utils.evaluation.crf_search import (searched_crf_settings,  # noqa: E402
                                         with_crf_settings)
from utils.inference.image_files import (CRF_MAX_PIXELS, check_output_apart, expand_inputs,  # noqa: E402
                                         predict_files)
from utils.inference.predictor import MIN_INPUT_SIDE, Predictor  # noqa: E402
from utils.inference.tiling import Tiling, default_overlap  # noqa: E402
from utils.inference.video import is_video, predict_video, video_name  # noqa: E402
from utils.runtime import setup_tensorflow  # noqa: E402


def parse_args(argv=None):
    p = job_parser(__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    add_run_flags(p, run_dir_to=source)
    source.add_argument('--exported', help='an export_model.py folder (SavedModel) or one of '
                        'its models (frozen_inference_graph.pb, model.onnx, model.tflite, '
                        'model_int8.tflite)')
    p.add_argument('--input', nargs='+', required=True,
                   help='images, folders or glob patterns; videos (.mp4, .avi, ...) or a camera '
                   'index (0) give NAME_overlay.mp4')
    p.add_argument('--batch_size', type=positive_int, default=4,
                   help='video frames per model run')
    p.add_argument('--save_class_maps', action='store_true',
                   help='videos: also NAME_frames/NNNNNN_label.png per frame')
    p.add_argument('--output_dir', required=True)
    p.add_argument('--crf', action='store_true', help='refine with dense CRF')
    p.add_argument('--crf_from', metavar='CRF_SEARCH_JSON',
                   help='refine with the CRF at the best setting of a crf_search.json '
                   '(evaluate.py --crf_search; implies --crf)')
    p.add_argument('--scales', type=list_of(float, minimum=0.05, example='0.75,1,1.25'),
                   default=(1.0,), help='e.g. 0.75,1,1.25 (averaged)')
    p.add_argument('--flip', action='store_true', help='average with the flipped image')
    add_size_flags(p)
    args = p.parse_args(argv)
    check_sizes(p, args)
    return args


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


def main(argv=None):
    args = parse_args(argv)
    args.crf = args.crf or bool(args.crf_from)
    setup_tensorflow()

    def work():
        videos = [spec for spec in args.input if is_video(spec)]
        images = [spec for spec in args.input if not is_video(spec)]
        paths = expand_inputs(images) if images else []
        check_output_apart(paths + videos, args.output_dir)  # never write over an input
        output_folder(args.output_dir, '--output_dir')
        if args.tile and videos:
            print('--tile applies to images; videos run whole (--max_side %d)' % args.max_side,
                  file=sys.stderr)
        with CrfPool(workers=None if args.crf else 1) as crf_pool:  # before the session
            settings = searched_crf_settings(args.crf_from) if args.crf_from else None
            predictor = make_predictor(args)
            if settings:
                predictor.config = with_crf_settings(predictor.config, settings)
            status = predict_images(args, predictor, paths, crf_pool) if paths else 0
            for spec in videos:
                status = max(status, predict_one_video(args, predictor, spec, crf_pool))
            return status

    return run_job(work)


def make_predictor(args):
    if args.exported:
        if args.checkpoint or args.latest or args.flip or args.scales != (1.0,):
            raise ConfigError('--checkpoint, --latest, --scales and --flip apply to --run_dir; '
                              'an exported model runs as exported')
        return ExportedPredictor(args.exported)
    return Predictor.from_run(args.run_dir, args.checkpoint, args.scales, args.flip,
                              args.latest, log=lambda m: print(m, file=sys.stderr))


def predict_images(args, predictor, paths, crf_pool):
    written, skipped = predict_files(
        predictor, paths, args.output_dir, args.crf,
        progress=lambda items: tqdm(items, unit='image', file=sys.stderr),
        log=lambda m: tqdm.write(m, file=sys.stderr), max_side=args.max_side,
        crf_pool=crf_pool if args.crf else None,
        tiling=Tiling(args.tile, args.tile_overlap) if args.tile else None,
        max_pixels=args.max_image_pixels)
    print('Predicted %d of %d images into %s%s'
          % (written, len(paths), args.output_dir,
             '; skipped %d' % len(skipped) if skipped else ''))
    return 0 if written else 1


def predict_one_video(args, predictor, spec, crf_pool):
    """Status 0, or 1 with a line when the video cannot be read (the other inputs go on)."""
    try:
        with tqdm(unit='frame', file=sys.stderr, desc=video_name(spec)) as bar:
            frames = predict_video(predictor, spec, args.output_dir, args.batch_size,
                                   crf_pool if args.crf else None, args.max_side,
                                   args.save_class_maps, progress=bar.update)
    except DataError as e:  # unreadable input: that video only (a full disk still stops all)
        print('error: %s' % e, file=sys.stderr)
        return 1
    print('Predicted %d frames of %s into %s' % (
        frames, spec, os.path.join(args.output_dir, video_name(spec) + '_overlay.mp4')))
    return 0


if __name__ == '__main__':
    sys.exit(main())
