"""Pictures of segmentations: class colours, overlays, and the per-sample validation JPEGs."""
import os

import cv2
import numpy as np

from utils.fileio import atomic_write_bytes

VOID_COLOR = (0, 0, 0)
JPEG_QUALITY = 95
SAMPLE_KINDS = ('img', 'annotation', 'prediction', 'prediction_crfed', 'overlay')


def default_palette(num_classes):
    """PASCAL-VOC-style colours (bits of the class id spread over R, G, B), [num_classes, 3]."""
    palette = np.zeros((num_classes, 3), np.uint8)
    for cls in range(num_classes):
        c, r, g, b = cls, 0, 0, 0
        for bit in range(7, -1, -1):
            r |= (c & 1) << bit
            g |= ((c >> 1) & 1) << bit
            b |= ((c >> 2) & 1) << bit
            c >>= 3
        palette[cls] = (r, g, b)
    return palette


def make_palette(class_colors, num_classes):
    """Configured colours, or the default palette when none are configured. uint8 [n, 3]."""
    if class_colors:
        return np.asarray(class_colors, np.uint8).reshape(num_classes, 3)
    return default_palette(num_classes)


def colorize(label, palette):
    """int [h, w] class map -> uint8 RGB [h, w, 3]; values outside the palette are VOID_COLOR."""
    label = np.asarray(label)
    rgb = np.empty(label.shape + (3,), np.uint8)
    rgb[:] = VOID_COLOR
    known = (label >= 0) & (label < len(palette))
    rgb[known] = palette[label[known]]
    return rgb


def overlay(image, label, palette, alpha=0.5):
    """Blends the colourised class map over the RGB image. uint8 [h, w, 3]."""
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colorize(label, palette)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def write_jpeg(path, rgb):
    ok, data = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise IOError('cannot encode JPEG for %s' % path)
    atomic_write_bytes(path, data.tobytes())


def write_sample_jpegs(directory, prefix, image, label, prediction, crf_prediction, palette,
                       alpha=0.5):
    """Writes PREFIX_img.jpg, _annotation, _prediction, _prediction_crfed, _overlay.jpg.

    `crf_prediction` may be None (CRF off): that picture is then not written. Returns the paths.
    """
    pictures = {
        'img': image,
        'annotation': colorize(label, palette),
        'prediction': colorize(prediction, palette),
        'prediction_crfed': None if crf_prediction is None else colorize(crf_prediction, palette),
        'overlay': overlay(image, prediction, palette, alpha),
    }
    paths = []
    for kind in SAMPLE_KINDS:
        if pictures[kind] is not None:
            path = os.path.join(directory, '%s_%s.jpg' % (prefix, kind))
            write_jpeg(path, pictures[kind])
            paths.append(path)
    return paths


def matplotlib_text(text):
    """`text` as matplotlib draws it literally: a '$' would start mathtext ('$x$' typeset, an
    unmatched one a ParseError that stopped the report)."""
    return str(text).replace('$', r'\$')
