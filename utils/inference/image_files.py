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
    """Files, folders (their images, sorted) and glob patterns -> a list of image paths, each
    file once."""
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
    seen = set()
    return [p for p in paths if not (os.path.realpath(p) in seen
                                     or seen.add(os.path.realpath(p)))]


def read_rgb(path):
    """uint8 RGB [h, w, 3] of any image OpenCV reads (grey and alpha handled), or None."""
    data = np.fromfile(path, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if image is None else image[..., ::-1].copy()


def output_names(paths):
    """A distinct output name per input, without extension: the file's stem when the stems
    are distinct; else its path below the inputs' common folder (the outputs mirror those
    folders), with the extension kept where even those repeat (a/x.jpg, a/x.png)."""
    names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(set(names)) == len(names):
        return names
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    relative = [os.path.relpath(os.path.abspath(p), root) for p in paths]
    names = [os.path.splitext(r)[0] for r in relative]
    if len(set(names)) == len(names):
        return names
    return [r.replace('.', '_') for r in relative]


def predict_capped(predictor, image, max_side):
    """Probabilities [h, w, n] of an image, run at most `max_side` pixels on its longer side
    (0: any size) and resized back, so that memory stays bounded on large photos."""
    height, width = image.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return predictor.predict(image)
    scale = max_side / max(height, width)
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    probabilities = predictor.predict(small)
    channels = [cv2.resize(np.ascontiguousarray(probabilities[..., c]), (width, height),
                           interpolation=cv2.INTER_LINEAR)
                for c in range(probabilities.shape[-1])]
    return np.stack(channels, axis=-1)


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


def predict_files(predictor, paths, output_dir, crf=False, progress=None, log=print,
                  max_side=0):
    """Runs `predictor` on each image path and writes its three outputs (see
    predict_capped for `max_side`).

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
        probabilities = predict_capped(predictor, image, max_side)
        class_map = (dense_crf(image, probabilities, **config.crf_params()) if crf
                     else probabilities.argmax(-1))
        write_prediction(output_dir, name, image, class_map, palette, config.overlay_alpha)
        written += 1
    return written, skipped
