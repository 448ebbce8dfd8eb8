"""Predicts class maps of your own images (any size or format) with a run or an exported model.

An exported model (`--exported`) is run as deployed, to check a deployment end to end.

    python predict.py --run_dir runs/camvid --input photo.jpg folder/ 'shots/*.png' \
        --output_dir out [--crf]
    python predict.py --exported exported/camvid --input folder/ --output_dir out
    python predict.py --run_dir runs/camvid --input clip.mp4 --output_dir out  # clip_overlay.mp4
    python predict.py --run_dir runs/camvid --input photo_12000x9000.jpg --output_dir out \
        --tile 512   # full resolution by overlapping 512x512 tiles, memory bounded

    python predict.py --run_dir runs/camvid --input folder/ --output_dir out \
        --save_probabilities   # + NAME_probabilities.npy, NAME_uncertainty.png

Per input NAME.ext: NAME_label.png (class indices, same size as the input), NAME_color.png
(class colours) and NAME_overlay.jpg. Preprocessing is the training's; runs on CPU or GPU.
"""
import os
import sys

from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from tqdm import tqdm  # noqa: E402

from utils.cli import (add_run_flags, job_parser, list_of,  # noqa: E402
                       output_folder, positive_int, run_job)
from utils.crf import CrfPool  # noqa: E402
from utils.data.pixels import header_size  # noqa: E402
from utils.deploy.exported import open_predictor  # noqa: E402
from utils.errors import DataError  # noqa: E402
from utils.evaluation.crf_search import (searched_crf_settings,  # noqa: E402
                                         with_crf_settings)
from utils.inference.flags import add_size_flags, check_sizes  # noqa: E402
from utils.inference.image_files import (check_output_apart, expand_inputs,  # noqa: E402
                                         predict_files)
from utils.inference.soft_outputs import check_disk_for_probabilities  # noqa: E402
from utils.inference.tiling import Tiling  # noqa: E402
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
    p.add_argument('--save_probabilities', action='store_true',
                   help='images only: also NAME_probabilities.npy, the class probabilities as '
                   'float16 [h, w, classes] at the input\'s size (before any CRF; '
                   'np.load(path).astype(np.float32) reads them), h x w x classes x 2 bytes: '
                   '3.8 MB for 360x480 with 11 classes, 2.4 GB for a 12000x9000 photo (refused '
                   'when the free disk would not hold them); and NAME_uncertainty.png, the '
                   'normalised entropy of each pixel (0 sure, 1 all classes alike)')
    add_size_flags(p)
    args = p.parse_args(argv)
    check_sizes(p, args)
    return args


def main(argv=None):
    args = parse_args(argv)
    args.crf = args.crf or bool(args.crf_from)
    setup_tensorflow()

    def work():
        videos = [spec for spec in args.input if is_video(spec)]
        images = [spec for spec in args.input if not is_video(spec)]
        paths = expand_inputs(images, skip=lambda path, why: print(
            'skipped %s: %s' % (path, why), file=sys.stderr)) if images else []
        check_output_apart(paths + videos, args.output_dir)  # never write over an input
        output_folder(args.output_dir, '--output_dir')
        if args.tile and videos:
            print('--tile applies to images; videos run whole (--max_side %d)' % args.max_side,
                  file=sys.stderr)
        if args.save_probabilities and videos:
            print('--save_probabilities applies to images; videos get their overlay only',
                  file=sys.stderr)
        with CrfPool(workers=None if args.crf else 1) as crf_pool:  # before the session
            settings = searched_crf_settings(args.crf_from) if args.crf_from else None
            predictor = open_predictor(args.run_dir, args.exported, args.checkpoint,
                                       args.latest, args.scales, args.flip,
                                       log=lambda m: print(m, file=sys.stderr))
            if settings:
                predictor.config = with_crf_settings(predictor.config, settings)
            if args.save_probabilities and paths:
                sizes = [size for size in map(header_size, paths) if size and (
                    not args.max_image_pixels or size[0] * size[1] <= args.max_image_pixels)]
                check_disk_for_probabilities(sizes, predictor.config.num_classes,
                                             args.output_dir)
            status = predict_images(args, predictor, paths, crf_pool) if paths else 0
            for spec in videos:
                status = max(status, predict_one_video(args, predictor, spec, crf_pool))
            return status

    return run_job(work)


def predict_images(args, predictor, paths, crf_pool):
    written, skipped = predict_files(
        predictor, paths, args.output_dir, args.crf,
        progress=lambda items: tqdm(items, unit='image', file=sys.stderr),
        log=lambda m: tqdm.write(m, file=sys.stderr), max_side=args.max_side,
        crf_pool=crf_pool if args.crf else None,
        tiling=Tiling(args.tile, args.tile_overlap) if args.tile else None,
        max_pixels=args.max_image_pixels, save_probabilities=args.save_probabilities)
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
