"""Prediction on users' own images: any size, any format OpenCV reads.

Per input NAME.ext it writes NAME_label.png (class indices, the input's size), NAME_color.png
(class colours) and NAME_overlay.jpg (colours blended on the image); with
`save_probabilities`, also NAME_probabilities.npy and NAME_uncertainty.png
(utils.inference.soft_outputs). Large images run
downscaled to `max_side`, or at full resolution by tiles (utils.inference.tiling); images above
the pixel limit (utils.data.pixels) are skipped before they are decoded.
"""
import glob
import os

import cv2
import numpy as np

from utils.crf import CrfPool
from utils.data.layouts import IMAGE_EXTENSIONS
from utils.data.pixels import MAX_IMAGE_PIXELS, ImageTooLarge, check_pixels, header_size
from utils.errors import ConfigError
from utils.fileio import atomic_write_bytes
from utils.inference.soft_outputs import ProbabilityWriter
from utils.inference.tiling import tiled_class_map, tiled_probabilities
from utils.visualization import colorize, make_palette, overlay, write_jpeg

# With tiles, the dense CRF runs on all of an image's probabilities at once, at full size: up to
# 2 million pixels (1920x1080 fits). pydensecrf took 1.15 GB more at 1 million pixels (11
# classes, 16 s on this CPU) and 4.5 GB more at 4 million, per CRF worker.
CRF_MAX_PIXELS = 2 ** 21
# Colours and overlays are made this many rows at a time: the float temporaries of a whole
# 108-megapixel photo would take 4 GB.
WRITE_BAND_ROWS = 512


def expand_inputs(specs, skip=None):
    """Files, folders (their images, sorted) and glob patterns -> a list of image paths, each
    file once. The other files of a folder (not hidden) are passed to `skip(path, reason)`."""
    paths = []
    for spec in specs:
        if os.path.isdir(spec):
            for name in sorted(os.listdir(spec)):
                path = os.path.join(spec, name)
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(path)
                elif skip and not name.startswith('.') and os.path.isfile(path):
                    skip(path, 'not an image by its name (images end in %s)'
                         % ', '.join(IMAGE_EXTENSIONS))
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


def read_rgb(path, max_pixels=MAX_IMAGE_PIXELS, name=None):
    """uint8 RGB [h, w, 3] of any image OpenCV reads (grey and alpha handled), or None.

    The size is read from the header first: an image above `max_pixels` (0: no limit) raises
    ImageTooLarge naming it as `name` (default: the path) before any pixel is decoded.
    """
    check_pixels(header_size(path), name or path, max_pixels)
    data = np.fromfile(path, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    # In place: a second full-size copy would cost 324 MB on a 108-megapixel photo.
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)


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


def in_bands(make, class_map, image=None, rows=WRITE_BAND_ROWS):
    """uint8 [h, w, 3] made `rows` rows at a time by make(class map rows[, image rows])."""
    out = np.empty(class_map.shape + (3,), np.uint8)
    for top in range(0, len(class_map), rows):
        bands = (class_map[top:top + rows],) + (() if image is None else (image[top:top + rows],))
        out[top:top + rows] = make(*bands)
    return out


def write_prediction(output_dir, name, image, class_map, palette, alpha=0.5):
    """Writes NAME_label.png, NAME_color.png, NAME_overlay.jpg; returns their paths."""
    label_path = os.path.join(output_dir, name + '_label.png')
    color_path = os.path.join(output_dir, name + '_color.png')
    overlay_path = os.path.join(output_dir, name + '_overlay.jpg')
    class_map = np.asarray(class_map, np.uint8)
    atomic_write_bytes(label_path, cv2.imencode('.png', class_map)[1].tobytes())
    bgr = palette[:, ::-1]  # OpenCV writes BGR: no flipped copy of the whole picture
    color = in_bands(lambda labels: colorize(labels, bgr), class_map)
    atomic_write_bytes(color_path, cv2.imencode('.png', color)[1].tobytes())
    del color
    write_jpeg(overlay_path, in_bands(lambda labels, rgb: overlay(rgb, labels, palette, alpha),
                                      class_map, image))
    return label_path, color_path, overlay_path


def readable_images(items, max_pixels, skip):
    """(path, name, uint8 RGB [h, w, 3]) of each (path, name) that decodes within `max_pixels`
    (0: no limit); skip(path, reason) is told of the others."""
    for path, name in items:
        try:
            image = read_rgb(path, max_pixels, name='it')
        except ImageTooLarge as e:
            skip(path, str(e))
            continue
        if image is None:
            skip(path, 'not a readable image')
            continue
        yield path, name, image


def write_probabilities(output_dir, name, probabilities, shape):
    """NAME_probabilities.npy and NAME_uncertainty.png at the input's `shape` from the
    probabilities [h', w', n] of a run at that size or smaller (resized a class at a time)."""
    with ProbabilityWriter(output_dir, name, shape, probabilities.shape[-1]) as writer:
        if probabilities.shape[:2] == tuple(shape[:2]):
            writer.write_rows(0, probabilities)
        else:
            for c, channel in enumerate(resized_channels(probabilities, shape)):
                writer.write_class(c, channel)


def predicted_class_map(predictor, image, max_side=0, tiling=None, probability_file=None):
    """The class map [h, w] of the RGB `image`: by tiles at full resolution with `tiling`
    (utils.inference.tiling.Tiling), else whole (see predict_capped for `max_side`). With
    `probability_file` (output_dir, name), its probabilities are saved too."""
    if tiling:
        if not probability_file:
            return tiled_class_map(predictor, image, tiling)
        with ProbabilityWriter(*probability_file, image.shape,
                               predictor.config.num_classes) as writer:
            return tiled_class_map(predictor, image, tiling, on_rows=writer.write_rows)
    _, probabilities = predict_capped(predictor, image, max_side)
    if probability_file:
        write_probabilities(*probability_file, probabilities, image.shape)
    return full_size_class_map(probabilities, image.shape)


def crf_inputs(predictor, images, max_side, tiling, skip, probability_dir=None):
    """((name, image), image as run, its probabilities) of each (path, name, image) for the
    CRF; with `tiling`, an image above CRF_MAX_PIXELS is skipped (skip(path, reason)): its
    probabilities at full size would not fit. With `probability_dir` the probabilities (before
    the CRF) are saved there."""
    for path, name, image in images:
        if not tiling or image.shape[0] * image.shape[1] <= CRF_MAX_PIXELS:
            run, probabilities = (predict_capped(predictor, image, max_side) if not tiling
                                  else (image, tiled_probabilities(predictor, image, tiling)))
            if probability_dir:
                write_probabilities(probability_dir, name, probabilities, image.shape)
            yield (name, image), run, probabilities
        else:
            skip(path, 'its %dx%d pixels are too many for the dense CRF at full size with '
                 '--tile (at most %.1f million); predict it without --crf, or without --tile '
                 '(the CRF then runs at --max_side)' % (image.shape[1], image.shape[0],
                                                        CRF_MAX_PIXELS / 1e6))


def predict_files(predictor, paths, output_dir, crf=False, progress=None, log=print,
                  max_side=0, crf_pool=None, tiling=None, max_pixels=MAX_IMAGE_PIXELS,
                  save_probabilities=False):
    """Runs `predictor` on each image path and writes its three outputs (see
    predicted_class_map for `max_side` and `tiling`), and with `save_probabilities` its
    probabilities and uncertainty picture; with `crf`, the dense CRF runs on `crf_pool` (all
    cores) while the next images are predicted.

    Unreadable files, images above `max_pixels` (utils.data.pixels) and, with `tiling` and
    `crf`, above CRF_MAX_PIXELS are skipped with a line each through `log`; returns (written
    count, skipped paths).
    """
    config = predictor.config
    palette = make_palette(config.class_colors, config.num_classes)
    os.makedirs(output_dir, exist_ok=True)
    items = list(zip(paths, output_names(paths)))
    skipped = []

    def skip(path, reason):
        log('skipped %s: %s' % (path, reason))
        skipped.append(path)

    images = readable_images(progress(items) if progress else items, max_pixels, skip)
    probability_dir = output_dir if save_probabilities else None
    if crf:
        runs = crf_inputs(predictor, images, max_side, tiling, skip, probability_dir)
        results = ((name, image, full_size_class_map(None, image.shape, crf_map))
                   for (name, image), crf_map in (crf_pool or CrfPool(1)).map(
                       runs, config.crf_params()))
    else:
        results = ((name, image, predicted_class_map(
            predictor, image, max_side, tiling,
            (probability_dir, name) if probability_dir else None)) for _, name, image in images)
    written = 0
    for name, image, class_map in results:
        write_prediction(output_dir, name, image, class_map, palette, config.overlay_alpha)
        written += 1
    return written, skipped


def check_output_apart(inputs, output_dir):
    """ConfigError when `output_dir` is the folder of an input (file path): the outputs
    (NAME_label.png, ...) would be written among the inputs, over a user's own file of that
    name."""
    out = os.path.realpath(output_dir)
    for path in inputs:
        if os.path.realpath(os.path.dirname(os.path.abspath(path))) == out:
            raise ConfigError('--output_dir %s is the folder of the input %s: predictions would '
                              'be written among the inputs (over files of the same names); '
                              'give another folder' % (output_dir, path))
