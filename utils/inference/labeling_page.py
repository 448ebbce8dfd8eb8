"""to_label.csv and to_label.html of rank_for_labeling.py: the images proposed for labelling,
each with the model's prediction and its uncertainty map; an offline page (relative links, no
script)."""
import csv
import html
import io
import os

import cv2
import numpy as np

from utils.fileio import atomic_write_text
from utils.inference.image_files import predict_capped, read_rgb
from utils.inference.soft_outputs import normalised_entropy, scale_bar, uncertainty_colors
from utils.inference.tiling import blended_rows
from utils.evaluation.report_page import STYLE, legend_html
from utils.evaluation.reports import class_names_of
from utils.visualization import colorize, make_palette, write_jpeg

CSV_FILENAME = 'to_label.csv'
PAGE_FILENAME = 'to_label.html'
CSV_FIELDS = ('rank', 'image', 'mean_uncertainty', 'duplicate_of', 'selected')
THUMBNAIL_SIDE = 360
PAGE_STYLE = STYLE + 'img.scale { width: 360px; display: block; }\n'


def _e(text):
    return html.escape(str(text))


def classes_and_uncertainty(predictor, image, max_side=0, tiling=None):
    """(class map uint8 [h, w], normalised entropy float32 [h, w]) of the RGB image, whole (at
    most `max_side`, then resized back) or by tiles."""
    if tiling:
        classes = np.empty(image.shape[:2], np.uint8)
        uncertainty = np.empty(image.shape[:2], np.float32)
        for top, rows in blended_rows(predictor, image, tiling):
            classes[top:top + len(rows)] = rows.argmax(-1)
            uncertainty[top:top + len(rows)] = normalised_entropy(rows)
        return classes, uncertainty
    _, probabilities = predict_capped(predictor, image, max_side)
    classes = probabilities.argmax(-1).astype(np.uint8)
    uncertainty = normalised_entropy(probabilities)
    size = (image.shape[1], image.shape[0])
    if classes.shape != image.shape[:2]:
        classes = cv2.resize(classes, size, interpolation=cv2.INTER_NEAREST)
        uncertainty = cv2.resize(uncertainty, size, interpolation=cv2.INTER_LINEAR)
    return classes, uncertainty


def thumbnail(picture, side=THUMBNAIL_SIDE):
    scale = min(1.0, side / max(picture.shape[:2]))
    if scale == 1.0:
        return picture
    return cv2.resize(picture, (max(1, round(picture.shape[1] * scale)),
                                max(1, round(picture.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA)


def write_ranking(output_dir, rows, predictor, max_side=0, tiling=None, skipped=(),
                  progress=None):
    """Writes to_label.csv (all `rows` of utils.inference.ranking.rank_images) and
    to_label.html with the selected images drawn under images/; returns the page's path."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(os.path.join(output_dir, CSV_FILENAME), out.getvalue())
    config = predictor.config
    palette = make_palette(config.class_colors, config.num_classes)
    selected = [r for r in rows if r['selected']]
    samples = []
    for row in (progress(selected) if progress else selected):
        image = read_rgb(row['image'], max_pixels=0)
        classes, uncertainty = classes_and_uncertainty(predictor, image, max_side, tiling)
        pictures = {'image': image, 'prediction': colorize(classes, palette),
                    'uncertainty': uncertainty_colors(uncertainty)}
        paths = {}
        for kind, picture in pictures.items():
            relative = os.path.join('images', 'rank%d_%s.jpg' % (row['rank'], kind))
            write_jpeg(os.path.join(output_dir, relative), thumbnail(picture))
            paths[kind] = relative
        samples.append((row, paths))
    write_jpeg(os.path.join(output_dir, 'images', 'uncertainty_scale.jpg'), scale_bar(360))
    path = os.path.join(output_dir, PAGE_FILENAME)
    atomic_write_text(path, ranking_page(rows, samples, config, palette, skipped))
    return path


def ranking_page(rows, samples, config, palette, skipped):
    """The page's HTML."""
    legend = legend_html(class_names_of(config), palette, void=False)
    duplicates = [r for r in rows if r['duplicate_of']]
    parts = ['<h1>What to label next: %d of %d images</h1>' % (len(samples), len(rows)),
             '<p class="sub">Ranked by the mean normalised entropy of the model\'s '
             'probabilities (0: sure of every pixel, 1: no class preferred); near-duplicates '
             'of an image ranked higher take no place (%d listed in %s). Bright = unsure:</p>'
             '<img class="scale" src="images/uncertainty_scale.jpg" alt="uncertainty scale">'
             % (len(duplicates), CSV_FILENAME), legend]
    for row, paths in samples:
        figures = ''.join('<figure><img src="%s" alt="%s"><figcaption>%s</figcaption></figure>'
                          % (_e(paths[kind]), kind, kind)
                          for kind in ('image', 'prediction', 'uncertainty'))
        parts.append('<div class="sample"><div class="t">#%d %s: mean uncertainty %.3f</div>'
                     '<div class="pics">%s</div></div>'
                     % (row['rank'], _e(row['image']), row['mean_uncertainty'], figures))
    if duplicates:
        parts.append('<h2>Near-duplicates left out</h2><table><tr><th>image</th>'
                     '<th>duplicate of</th></tr>%s</table>' % ''.join(
                         '<tr><td>%s</td><td>%s</td></tr>' % (_e(r['image']),
                                                              _e(r['duplicate_of']))
                         for r in duplicates))
    if skipped:
        parts.append('<h2>Skipped (not readable images)</h2><p>%s</p>'
                     % ', '.join(_e(p) for p in skipped))
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>What to label '
            'next</title><style>%s</style></head><body>%s</body></html>\n'
            % (PAGE_STYLE, ''.join(parts)))
