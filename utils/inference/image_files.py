"""Prediction on users' own images: any size, any format OpenCV reads.

Per input NAME.ext it writes NAME_label.png (class indices, the input's size), NAME_color.png
(class colours) and NAME_overlay.jpg (colours blended on the image).
"""
import glob
import os

import cv2
import numpy as np

from utils.crf import CrfPool
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


def predict_capped(predictor, image, max_side=0):
    """(the image as run, its probabilities [h', w', n]): an image over `max_side` pixels on
    its longer side (0: no limit) runs at that size, so that memory stays bounded on large
    photos."""
    height, width = image.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return image, predictor.predict(image)
    scale = max_side / max(height, width)
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    return small, predictor.predict(small)


def resized_channels(probabilities, shape):
    """Each class's probabilities [h', w', n] resized bilinearly to `shape` (h, w), one at a
    time (so that all classes need not be held at the large size)."""
    height, width = shape[:2]
    for c in range(probabilities.shape[-1]):
        yield cv2.resize(np.ascontiguousarray(probabilities[..., c]), (width, height),
                         interpolation=cv2.INTER_LINEAR)


def full_size_class_map(probabilities, shape, crf_map=None):
    """The class map [h, w] at the input's `shape` from probabilities (or a CRF class map) of
    a possibly smaller run: probabilities are resized bilinearly one class at a time (a
    running argmax, never all classes at full size), a CRF map by nearest neighbour."""
    height, width = shape[:2]
    if crf_map is not None:
        if crf_map.shape == (height, width):
            return crf_map
        return cv2.resize(crf_map.astype(np.uint8), (width, height),
                          interpolation=cv2.INTER_NEAREST)
    if probabilities.shape[:2] == (height, width):
        return probabilities.argmax(-1)
    best = np.full((height, width), -1.0, np.float32)
    class_map = np.zeros((height, width), np.uint8)
    for c, channel in enumerate(resized_channels(probabilities, shape)):
        better = channel > best
        best[better], class_map[better] = channel[better], c
    return class_map


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
                  max_side=0, crf_pool=None):
    """Runs `predictor` on each image path and writes its three outputs (see predict_capped
    for `max_side`); with `crf`, the dense CRF runs on `crf_pool` (all cores) while the next
    images are predicted.

    Unreadable files are skipped and reported; returns (written count, skipped paths).
    """
    config = predictor.config
    palette = make_palette(config.class_colors, config.num_classes)
    os.makedirs(output_dir, exist_ok=True)
    items = list(zip(paths, output_names(paths)))
    skipped = []

    def predictions():
        for path, name in (progress(items) if progress else items):
            image = read_rgb(path)
            if image is None:
                log('skipped %s: not a readable image' % path)
                skipped.append(path)
                continue
            small, probabilities = predict_capped(predictor, image, max_side)
            yield (name, image, probabilities), small, probabilities

    if crf:
        results = ((name, image, full_size_class_map(None, image.shape, crf_map))
                   for (name, image, _), crf_map in (crf_pool or CrfPool(1)).map(
                       predictions(), config.crf_params()))
    else:
        results = ((name, image, full_size_class_map(probabilities, image.shape))
                   for (name, image, probabilities), _, _ in predictions())
    written = 0
    for name, image, class_map in results:
        write_prediction(output_dir, name, image, class_map, palette, config.overlay_alpha)
        written += 1
    return written, skipped
