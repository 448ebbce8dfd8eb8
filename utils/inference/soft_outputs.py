"""Soft outputs of a prediction: the class probabilities as a file, and how unsure the model is.

Probabilities are written as NAME_probabilities.npy: float16 [h, w, num_classes] at the
input's size, in numpy's own format (PROBABILITY_BYTES bytes per pixel and class: 3.8 MB for a
360x480 image of 11 classes). Read them back with:

    import numpy as np
    probabilities = np.load('photo_probabilities.npy').astype(np.float32)  # [h, w, n]
    classes = probabilities.argmax(-1)                                      # == photo_label.png

They are the network's (averaged over --scales/--flip, blended over tiles with --tile), before
any dense CRF. The file is filled band by band through a memory map, so that a huge image never
holds them all in memory; it appears under its name only when complete.

The uncertainty is the normalised entropy of each pixel's probabilities, -sum p log p / log n:
0 where one class has all the probability, 1 where all classes are equally likely.
NAME_uncertainty.png draws it colour-mapped (OpenCV's inferno, dark = sure) with its scale.
"""
import os
import shutil

import cv2
import numpy as np

from utils.errors import ConfigError
from utils.fileio import atomic_path, atomic_write_bytes

PROBABILITY_DTYPE = np.float16
PROBABILITY_BYTES = np.dtype(PROBABILITY_DTYPE).itemsize
PROBABILITIES_SUFFIX = '_probabilities.npy'
UNCERTAINTY_SUFFIX = '_uncertainty.png'
BAND_ROWS = 512  # rows read back at a time to draw the uncertainty
COLORMAP = cv2.COLORMAP_INFERNO
# Disk left free beyond the probability files: the other outputs and the system's own needs.
DISK_MARGIN_BYTES = 256 * 2 ** 20


def normalised_entropy(probabilities):
    """float32 [...]: -sum p log p / log n over the last axis (n classes), in [0, 1]."""
    p = np.asarray(probabilities, np.float32)
    n = p.shape[-1]
    if n < 2:
        return np.zeros(p.shape[:-1], np.float32)
    with np.errstate(divide='ignore', invalid='ignore'):
        terms = np.where(p > 0, p * np.log(np.maximum(p, 1e-30)), 0.0)
    return np.clip(-terms.sum(-1) / np.log(n), 0.0, 1.0).astype(np.float32)


def probability_file_bytes(shape, num_classes):
    """Bytes of one NAME_probabilities.npy for an image of `shape` (h, w) (its header aside)."""
    return int(shape[0]) * int(shape[1]) * num_classes * PROBABILITY_BYTES


def check_disk_for_probabilities(sizes, num_classes, output_dir):
    """ConfigError when the probability files of images of `sizes` [(h, w)] would not fit the
    free disk of `output_dir` (with DISK_MARGIN_BYTES to spare), before any is written."""
    need = sum(probability_file_bytes(size, num_classes) for size in sizes)
    folder = output_dir
    while not os.path.isdir(folder):
        folder = os.path.dirname(os.path.abspath(folder))
    free = shutil.disk_usage(folder).free
    if need + DISK_MARGIN_BYTES > free:
        raise ConfigError('--save_probabilities: the probabilities of %d image(s) take %.1f GB '
                          '(%d classes x 2 bytes per pixel) and %s has %.1f GB free; free some '
                          'space, give another --output_dir, or predict fewer images at once'
                          % (len(sizes), need / 1e9, num_classes, output_dir, free / 1e9))
    return need


class ProbabilityWriter:
    """NAME_probabilities.npy and NAME_uncertainty.png of one image, written band by band.

        with ProbabilityWriter(output_dir, name, (h, w), n) as writer:
            writer.write_rows(top, probabilities_rows)     # float [rows, w, n], any order
            # or writer.write_class(c, channel)            # float [h, w], one class at a time
        # both files are in place once the block ends without an error
    """

    def __init__(self, output_dir, name, shape, num_classes):
        self.path = os.path.join(output_dir, name + PROBABILITIES_SUFFIX)
        self.uncertainty_path = os.path.join(output_dir, name + UNCERTAINTY_SUFFIX)
        self.shape = (int(shape[0]), int(shape[1]), num_classes)
        self._atomic = atomic_path(self.path)

    def __enter__(self):
        self._tmp_path = self._atomic.__enter__()
        self.probabilities = np.lib.format.open_memmap(
            self._tmp_path, mode='w+', dtype=PROBABILITY_DTYPE, shape=self.shape)
        return self

    def write_rows(self, top, rows):
        self.probabilities[top:top + len(rows)] = rows

    def write_class(self, c, channel):
        self.probabilities[..., c] = channel

    def __exit__(self, kind, value, traceback):
        error = value
        if kind is None:
            try:
                self.probabilities.flush()
                uncertainty = np.empty(self.shape[:2], np.float32)
                for top in range(0, self.shape[0], BAND_ROWS):
                    uncertainty[top:top + BAND_ROWS] = normalised_entropy(
                        self.probabilities[top:top + BAND_ROWS])
                write_uncertainty_png(self.uncertainty_path, uncertainty)
            except BaseException as e:  # then the probabilities are not moved into place
                error = e
        del self.probabilities  # closes the map before the file is moved or removed
        if error is None:
            self._atomic.__exit__(None, None, None)
            return False
        self._atomic.__exit__(type(error), error, error.__traceback__)  # removes the temporary
        if error is not value:
            raise error
        return False


def uncertainty_colors(uncertainty):
    """uint8 RGB [h, w, 3] of an uncertainty map in [0, 1] (dark = sure, bright = unsure)."""
    levels = np.round(np.clip(uncertainty, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, COLORMAP), cv2.COLOR_BGR2RGB)


def scale_bar(width):
    """uint8 RGB [bar height, width, 3]: the colour scale from 0 (sure) to 1 (unsure), named."""
    height = max(22, min(60, width // 24))
    ramp = np.tile(np.linspace(0, 1, width, dtype=np.float32), (height // 2, 1))
    bar = np.full((height, width, 3), 255, np.uint8)
    bar[:height // 2] = uncertainty_colors(ramp)
    font_scale = height / 60.0
    for text, x in (('0 sure', 2), ('normalised entropy', width // 2 - int(95 * font_scale)),
                    ('1 unsure', width - int(110 * font_scale) - 2)):
        cv2.putText(bar, text, (max(0, x), height - 4), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def write_uncertainty_png(path, uncertainty):
    """The colour-mapped uncertainty with its scale bar underneath, as a PNG."""
    picture = np.concatenate([uncertainty_colors(uncertainty),
                              scale_bar(uncertainty.shape[1])])
    atomic_write_bytes(path, cv2.imencode('.png', picture[..., ::-1])[1].tobytes())
