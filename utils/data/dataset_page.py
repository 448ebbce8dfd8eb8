"""dataset.html: what a conversion wrote, to be looked at before hours of training.

    write_dataset_page(path, report, samples, class_names, palette)

One offline page (no script, nothing fetched; its pictures are embedded, so it travels as one
file) beside the records: the pixel share and image count of each class as bars, the
median-frequency class weights as the `class_weights:` line a config takes, the label values
found in the label files and what each was stored as (a class or void), the image sizes, and a
gallery of a few random pairs (annotation over image, and the annotation alone). A mask saved
as 0/255, a colour palette read as indices or a wrong label map shows here as a class with no
pixel, a void share of most of the image, or an overlay that does not fit the picture.
"""
import base64
import html
import os

import cv2
import numpy as np

from utils.evaluation.report_page import STYLE
from utils.fileio import atomic_write_text
from utils.visualization import colorize, overlay

DATASET_PAGE_SUFFIX = '.dataset.html'
NUM_SAMPLES = 8  # pairs in the gallery, drawn at random (seeded: the same pairs each time)
SAMPLE_SIDE = 240  # their pictures' longer side, in pixels
VOID_SHARE_WARNING = 0.5  # a void share above this is named as likely wrong
PAGE_STYLE = STYLE + """
.pair { display: inline-block; margin: 0 10px 14px 0; vertical-align: top; }
.pair img { display: inline-block; margin-right: 4px; }
.pair .t { font-size: 12px; color: #666; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; }
"""


def dataset_page_path(output_path):
    """The page of the conversion to `output_path` (a record file's path, shards' shared)."""
    return output_path + DATASET_PAGE_SUFFIX


def _e(text):
    return html.escape(str(text))


def _bar(share, width=260):
    return ('<span class="bar" style="width:%dpx"><span style="width:%.1f%%"></span></span>'
            % (width, min(100.0, 100 * share)))


def _jpeg_uri(rgb):
    ok, data = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise IOError('cannot encode a gallery picture as JPEG')
    return 'data:image/jpeg;base64,' + base64.b64encode(data.tobytes()).decode('ascii')


def _shrunk(rgb, interpolation):
    scale = SAMPLE_SIDE / max(rgb.shape[:2])
    if scale >= 1:
        return rgb
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=interpolation)


def warnings_of(report, class_names):
    """Lines about what looks wrong in the converted data."""
    lines = []
    missing = [class_names[c] for c, count in enumerate(report['class_pixel_counts'])
               if not count]
    if missing:
        lines.append('%d class(es) have no pixel: %s. Check the label map (label_map, '
                     'label_map_default, color_map) and the void label of the config'
                     % (len(missing), ', '.join(missing)))
    total = sum(report['class_pixel_counts']) + report['ignored_pixel_count']
    void = report['ignored_pixel_count'] / max(total, 1)
    if void > VOID_SHARE_WARNING:
        lines.append('%.0f%% of the pixels are void (not scored, not trained): is the void '
                     'label or label_map_default right?' % (100 * void))
    if report['pairs_skipped']:
        lines.append('%d pair(s) were skipped (listed below)' % report['pairs_skipped'])
    return lines


def classes_section(report, class_names, palette):
    counts = report['class_pixel_counts']
    images = report['class_image_counts']
    written = max(report['pairs_written'], 1)
    top = max(max(report['class_frequencies']), 1e-9)
    rows = ''.join(
        '<tr><td>%d</td><td><span class="swatch" style="background:rgb(%d,%d,%d)"></span>%s</td>'
        '<td>%s %.2f%%</td><td>%s %d (%.0f%%)</td><td>%.4f</td></tr>'
        % ((c,) + tuple(int(v) for v in palette[c]) + (
            _e(class_names[c]), _bar(report['class_frequencies'][c] / top, 200),
            100 * report['class_frequencies'][c], _bar(images[c] / written, 120), images[c],
            100 * images[c] / written, report['median_frequency_weights'][c]))
        for c in range(len(counts)))
    weights = ', '.join('%g' % w for w in report['median_frequency_weights'])
    return ('<h2>Classes</h2><p class="sub">Pixel share among labelled pixels (bars scaled to '
            'the largest class), the images that hold each class, and the median-frequency '
            'weight (SegNet: median of the class frequencies / the class\'s frequency, each '
            'counted over the images that hold the class).</p>'
            '<table class="classes"><tr><th>id</th><th>class</th><th>pixel share</th>'
            '<th>images</th><th>weight</th></tr>%s</table>'
            '<p>To weight the loss by them, put this line in the training config:</p>'
            '<pre id="class-weights">class_weights: [%s]</pre>' % (rows, weights))


def values_section(report, class_names):
    total = max(sum(v['pixels'] for v in report['label_values']), 1)
    ignore = report['ignore_label']

    def stored(value):
        return 'void (not scored)' if value == ignore else '%d %s' % (
            value, class_names[value] if 0 <= value < len(class_names) else '')

    rows = ''.join('<tr><td>%d</td><td>%d</td><td>%s %.2f%%</td><td>%s</td></tr>'
                   % (v['value'], v['pixels'], _bar(v['pixels'] / total, 160),
                      100 * v['pixels'] / total, _e(stored(v['stored_as'])))
                   for v in report['label_values'])
    return ('<h2>Label values found</h2><p class="sub">Each value in the label files as read '
            '(after a colour map, before the label map), and what the records store it as. '
            'Values 0 and 255 alone mean a binary mask; values far above the class count, a '
            'palette image or an offset.</p><table class="classes" id="label-values"><tr>'
            '<th>value</th><th>pixels</th><th>share</th><th>stored as</th></tr>%s</table>'
            % rows)


def sizes_section(report):
    sizes = report['image_sizes']
    most = max(s['count'] for s in sizes)
    shown = sizes[:12]
    rows = ''.join('<tr><td>%d x %d</td><td>%s %d</td></tr>'
                   % (s['width'], s['height'], _bar(s['count'] / most, 200), s['count'])
                   for s in shown)
    more = ('<p class="sub">... and %d other size(s) with %d image(s); smallest %d x %d, '
            'largest %d x %d (height x width: %s, %s).</p>'
            % (len(sizes) - len(shown), sum(s['count'] for s in sizes[len(shown):]),
               report['min_size'][1], report['min_size'][0], report['max_size'][1],
               report['max_size'][0], report['min_size'], report['max_size'])
            if len(sizes) > len(shown) else '')
    return ('<h2>Image sizes</h2><p class="sub">width x height, most frequent first.</p>'
            '<table>%s</table>%s' % (rows, more))


def gallery_section(samples, palette, legend):
    """`samples`: [(image path, RGB image, label)]."""
    parts = []
    for path, image, label in samples:
        shown_image = _shrunk(image, cv2.INTER_AREA)
        shown_label = _shrunk(label.astype(np.uint8), cv2.INTER_NEAREST)
        parts.append('<div class="pair"><div class="t">%s</div>'
                     '<img alt="annotation over %s" src="%s"><img alt="annotation of %s" '
                     'src="%s"></div>'
                     % (_e(os.path.basename(path)), _e(os.path.basename(path)),
                        _jpeg_uri(overlay(shown_image, shown_label, palette)),
                        _e(os.path.basename(path)),
                        _jpeg_uri(colorize(shown_label, palette))))
    return ('<h2>Random pairs</h2><p class="sub">%d of the pairs, drawn at random: the '
            'annotation over the image, and alone (void in black). An annotation that does not '
            'fit its image, or colours that make no sense, are a conversion to redo.</p>%s'
            '<div id="gallery">%s</div>' % (len(samples), legend, ''.join(parts)))


def skipped_section(report):
    if not report['skipped']:
        return ''
    rows = ''.join('<li>%s</li>' % _e(item['reason']) for item in report['skipped'][:50])
    more = ('<p class="sub">... and %d more in the report JSON.</p>'
            % (len(report['skipped']) - 50) if len(report['skipped']) > 50 else '')
    return '<h2>Skipped pairs</h2><ul>%s</ul>%s' % (rows, more)


def write_dataset_page(path, report, samples, class_names, palette):
    """Writes the page of a conversion's `report` (utils.data.conversion.make_report) at
    `path`; `samples`: [(image path, RGB image, label class ids)] for the gallery."""
    legend = '<p class="legend">%s</p>' % ''.join(
        '<span><span class="swatch" style="background:rgb(%d,%d,%d)"></span>%s</span>'
        % (tuple(int(v) for v in palette[i]) + (_e(n),)) for i, n in enumerate(class_names))
    title = 'Dataset: %s' % ', '.join(os.path.basename(p) for p in report['output_paths'])
    warnings = ''.join('<p class="warn">%s</p>' % _e(line)
                       for line in warnings_of(report, class_names))
    total = sum(report['class_pixel_counts']) + report['ignored_pixel_count']
    body = ''.join([
        '<h1>%s</h1>' % _e(title),
        '<p class="sub">%d pairs written of %d found (%d skipped), %d classes, %.1f%% of the '
        'pixels void; records: %s</p>'
        % (report['pairs_written'], report['pairs_found'], report['pairs_skipped'],
           report['num_classes'], 100 * report['ignored_pixel_count'] / max(total, 1),
           _e(', '.join(report['output_paths']))),
        warnings, classes_section(report, class_names, palette),
        values_section(report, class_names), sizes_section(report),
        gallery_section(samples, palette, legend), skipped_section(report)])
    atomic_write_text(path, '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
                            '<title>%s</title><style>%s</style></head><body>%s</body></html>\n'
                      % (_e(title), PAGE_STYLE, body))
    return path
