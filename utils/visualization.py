"""Pictures of segmentations: class colours, overlays, and the per-sample validation JPEGs."""
import os

import cv2
import numpy as np

from utils.fileio import atomic_write_bytes

# Ignored (void) pixels: the first of these that no class uses, so that a trained class drawn
# black (VOC's background, camvid7's "Void") never looks like the pixels that are not scored.
VOID_COLORS = ((255, 255, 255), (255, 0, 255), (0, 255, 255), (0, 0, 0))
VOID_NAME = 'void (not scored)'
JPEG_QUALITY = 95
SAMPLE_KINDS = ('img', 'annotation', 'prediction', 'prediction_crfed', 'overlay')
LEGEND_FONT, LEGEND_SCALE, LEGEND_ROW, LEGEND_SWATCH = cv2.FONT_HERSHEY_SIMPLEX, 0.38, 15, 10


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


def void_color(palette):
    """The colour of ignored pixels beside `palette`: the first of VOID_COLORS no class has."""
    used = {tuple(int(v) for v in color) for color in palette}
    return next((c for c in VOID_COLORS if c not in used), VOID_COLORS[0])


def colorize(label, palette):
    """int [h, w] class map -> uint8 RGB [h, w, 3]; values outside the palette (void) get
    void_color(palette)."""
    label = np.asarray(label)
    rgb = np.empty(label.shape + (3,), np.uint8)
    rgb[:] = void_color(palette)
    known = (label >= 0) & (label < len(palette))
    rgb[known] = palette[label[known]]
    return rgb


def overlay(image, label, palette, alpha=0.5):
    """Blends the colourised class map over the RGB image. uint8 [h, w, 3]."""
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colorize(label, palette)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def legend_entries(palette, names, classes=None, void=True):
    """[(name, (r, g, b))] of `classes` (all by default), then void's: what a legend lists."""
    classes = range(len(names)) if classes is None else classes
    entries = [(names[c], tuple(int(v) for v in palette[c])) for c in classes]
    return entries + ([(VOID_NAME, void_color(palette))] if void else [])


def legend_scale(width):
    """How much larger than at 640 pixels wide the legend is drawn on a `width`-pixel picture
    (1 up to 640, so that it stays readable on a 2048-wide one)."""
    return max(1, int(round(width / 640.0)))


def legend_strip(width, palette, names, classes=None, void=True):
    """A strip of colour swatches and class names, wrapped to `width` pixels, to stack under a
    picture of class colours: uint8 RGB [rows x LEGEND_ROW x legend_scale(width), width, 3],
    white background. `classes`: the class ids to list (all by default: a 150-class legend
    would outgrow the picture, so pictures list the classes they show)."""
    k = legend_scale(width)
    row_height, swatch, font_scale = LEGEND_ROW * k, LEGEND_SWATCH * k, LEGEND_SCALE * k
    rows, row, used = [], [], 0
    for name, color in legend_entries(palette, names, classes, void):
        text_width = cv2.getTextSize(name, LEGEND_FONT, font_scale, k)[0][0]
        needed = swatch + (4 + 10) * k + text_width
        if row and used + needed > width:
            rows.append(row)
            row, used = [], 0
        row.append((name, color, used))
        used += needed
    rows.append(row)
    strip = np.full((row_height * len(rows), width, 3), 255, np.uint8)
    for r, entries_of_row in enumerate(rows):
        top = r * row_height + (row_height - swatch) // 2
        for name, color, x in entries_of_row:
            corners = (x + 2 * k, top), (x + 2 * k + swatch, top + swatch)
            cv2.rectangle(strip, *corners, color, -1)
            cv2.rectangle(strip, *corners, (90, 90, 90), k)
            cv2.putText(strip, name, (x + swatch + 6 * k, top + swatch - k), LEGEND_FONT,
                        font_scale, (0, 0, 0), k, cv2.LINE_AA)
    return strip


def with_legend(rgb, label, palette, names):
    """`rgb`, a picture of class map `label`, with the legend of the classes it shows (and
    void, where it has void pixels) under it."""
    values = np.unique(label)
    classes = [int(v) for v in values if 0 <= v < len(names)]
    strip = legend_strip(rgb.shape[1], palette, names, classes, void=len(classes) < len(values))
    return np.concatenate([rgb, strip], axis=0)


def write_jpeg(path, rgb):
    ok, data = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise IOError('cannot encode JPEG for %s' % path)
    atomic_write_bytes(path, data.tobytes())


def write_sample_jpegs(directory, prefix, image, label, prediction, crf_prediction, palette,
                       alpha=0.5, names=None):
    """Writes PREFIX_img.jpg, _annotation, _prediction, _prediction_crfed, _overlay.jpg.

    `crf_prediction` may be None (CRF off): that picture is then not written. The overlay
    blends the prediction that is headlined: the CRF's when the CRF is on, else the network's.
    With class `names`, the class pictures and the overlay get a legend strip below them.
    Returns the paths.
    """
    headlined = prediction if crf_prediction is None else crf_prediction
    pictures = {
        'img': image,
        'annotation': colorize(label, palette),
        'prediction': colorize(prediction, palette),
        'prediction_crfed': None if crf_prediction is None else colorize(crf_prediction, palette),
        'overlay': overlay(image, headlined, palette, alpha),
    }
    if names is not None:
        shown = {'annotation': label, 'prediction': prediction,
                 'prediction_crfed': crf_prediction, 'overlay': headlined}
        pictures.update({kind: with_legend(pictures[kind], shown[kind], palette, names)
                         for kind in shown if pictures[kind] is not None})
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
