"""Prediction on users' own images: any size, any format OpenCV reads.

Per input NAME.ext it writes NAME_label.png (class indices, the input's size), NAME_color.png
(class colours) and NAME_overlay.jpg (colours blended on the image).
"""
import glob
import os

import cv2
import numpy as np

from utils.crf import dense_crf
from utils.data.layouts import IMAGE_EXTENSIONS
from utils.fileio import atomic_write_bytes
from utils.visualization import colorize, make_palette, overlay, write_jpeg


def expand_inputs(specs):
    """Files, folders (their images, sorted) and glob patterns -> a list of image paths."""
    paths = []
    for spec in specs:
        if os.path.isdir(spec):
            paths += sorted(os.path.join(spec, n) for n in os.listdir(spec)
                            if n.lower().endswith(IMAGE_EXTENSIONS))
        elif os.path.isfile(spec):
            paths.append(spec)
        else:
            matches = sorted(glob.glob(spec))
            if not matches:
                raise FileNotFoundError('input %s is no file, folder or matching pattern' % spec)
            paths += matches
    return paths


def read_rgb(path):
    """uint8 RGB [h, w, 3] of any image OpenCV reads (grey and alpha handled), or None."""
    data = np.fromfile(path, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if image is None else image[..., ::-1].copy()


def output_names(paths):
    """A distinct output stem per input (NAME, or NAME_2, ... when stems repeat)."""
    seen, names = {}, []
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else '%s_%d' % (stem, seen[stem]))
    return names


def write_prediction(output_dir, name, image, class_map, palette, alpha=0.5):
    """Writes NAME_label.png, NAME_color.png, NAME_overlay.jpg; returns their paths."""
    label_path = os.path.join(output_dir, name + '_label.png')
    color_path = os.path.join(output_dir, name + '_color.png')
    overlay_path = os.path.join(output_dir, name + '_overlay.jpg')
    atomic_write_bytes(label_path, cv2.imencode('.png', class_map.astype(np.uint8))[1].tobytes())
    color = colorize(class_map, palette)
    atomic_write_bytes(color_path, cv2.imencode('.png', color[..., ::-1])[1].tobytes())
    write_jpeg(overlay_path, overlay(image, class_map, palette, alpha))
    return label_path, color_path, overlay_path


def predict_files(predictor, paths, output_dir, crf=False, progress=None, log=print):
    """Runs `predictor` on each image path and writes its three outputs.

    Unreadable files are skipped and reported; returns (written count, skipped paths).
    """
    config = predictor.config
    palette = make_palette(config.class_colors, config.num_classes)
    os.makedirs(output_dir, exist_ok=True)
    items = list(zip(paths, output_names(paths)))
    skipped, written = [], 0
    for path, name in (progress(items) if progress else items):
        image = read_rgb(path)
        if image is None:
            log('skipped %s: not a readable image' % path)
            skipped.append(path)
            continue
        probabilities = predictor.predict(image)
        class_map = (dense_crf(image, probabilities, **config.crf_params()) if crf
                     else probabilities.argmax(-1))
        write_prediction(output_dir, name, image, class_map, palette, config.overlay_alpha)
        written += 1
    return written, skipped
