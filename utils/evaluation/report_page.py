"""report.html: an evaluation's whole story on one page that opens offline and prints.

Headline scores (with and without CRF), two-class scores when computed, the per-class table
with class colours and IoU bars, the row-normalised confusion matrix as a heat map, the
training story (loss and validation mIoU, which checkpoint and why), a gallery of the worst
and best images with their five pictures, and the settings. Pictures are files of the same
folder (relative links); there is no script and nothing is fetched from the network.
"""
import html
import os

import numpy as np

from utils.evaluation.metrics import points
from utils.evaluation.scoring import data_warnings
from utils.fileio import atomic_write_text
from utils.visualization import SAMPLE_KINDS, legend_entries

REPORT_FILENAME = 'report.html'
KIND_TITLES = {'img': 'image', 'annotation': 'annotation', 'prediction': 'prediction',
               'prediction_crfed': 'CRF prediction', 'overlay': 'overlay'}
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; color: #222; margin: 24px auto; max-width: 1100px;
       padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin: 28px 0 8px;
     border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.sub { color: #666; margin: 0 0 16px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 130px; }
.card .v { font-size: 22px; font-weight: 600; } .card .k { color: #666; font-size: 12px; }
.card .c { color: #a55a00; font-size: 13px; }
table { border-collapse: collapse; } td, th { padding: 3px 8px; text-align: left; }
.classes td { border-bottom: 1px solid #eee; }
.swatch { display: inline-block; width: 14px; height: 14px; border: 1px solid #999;
          vertical-align: middle; margin-right: 6px; }
.bar { background: #eee; width: 260px; height: 12px; display: inline-block;
       vertical-align: middle; }
.bar span { display: block; height: 12px; background: #3b6fb6; }
.bar span.crf { background: #e39b2d; }
.heat td, .heat th { border: 1px solid #fff; font-size: 12px; text-align: center; min-width: 38px; }
.heat th.r { text-align: right; } .heat th.col { writing-mode: vertical-rl;
  transform: rotate(180deg); height: 90px; vertical-align: bottom; }
.sample { margin: 10px 0 18px; } .sample .t { font-weight: 600; margin-bottom: 4px; }
.sample .pics { display: flex; gap: 6px; }
.sample figure { margin: 0; flex: 1; min-width: 0; } .sample img { width: 100%; display: block; }
.sample figcaption { font-size: 11px; color: #666; }
.legend span { margin-right: 14px; white-space: nowrap; }
.settings td:first-child { color: #666; padding-right: 18px; } .warn { color: #b00020; }
img.plot { max-width: 100%; }
.crops { justify-content: flex-start; } .crops figure { flex: 0 1 auto; }
.sample .crops img { width: auto; max-width: 100%; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; }
  .sample, .card, tr { break-inside: avoid; } }
"""


def _e(text):
    return html.escape(str(text))


def crf_setting(result):
    """'with CRF' or 'without CRF': the setting the page headlines, the evaluation's own (the
    CRF's scores when it ran, as the run's config or --crf asked)."""
    return 'with CRF' if 'crf' in result else 'without CRF'


def headline_section(result):
    """The scores as cards, the headlined setting's large; with CRF, the network's own figure
    under each."""
    items = [('mean_iou', 'mean IoU'), ('pixel_accuracy', 'pixel accuracy'),
             ('mean_accuracy', 'mean class accuracy'), ('fw_iou', 'frequency-weighted IoU')]
    main = result.get('crf', result)
    cards = []
    for key, title in items:
        other = ('<div class="c">without CRF %s</div>' % points(result[key])
                 if 'crf' in result else '')
        cards.append('<div class="card"><div class="v">%s</div><div class="k">%s</div>%s</div>'
                     % (points(main[key]), title, other))
    if 'boundary' in result:
        boundary = main.get('boundary', result['boundary'])
        other = ('<div class="c">without CRF %s</div>'
                 % points(result['boundary']['mean_boundary_f'])
                 if 'boundary' in result.get('crf', {}) else '')
        cards.append('<div class="card"><div class="v">%s</div><div class="k">boundary F '
                     '(%g px at 360x480)</div>%s</div>'
                     % (points(boundary['mean_boundary_f']),
                        result['boundary']['boundary_tolerance'], other))
    if 'calibration' in result:
        cards.append('<div class="card"><div class="v">%s</div><div class="k">calibration '
                     'error (ECE, network probabilities)</div></div>'
                     % points(result['calibration']['ece']))
    return ('<h2>Scores %s, %% (%d images)</h2><div class="cards">%s</div>'
            % (crf_setting(result), result['num_images'], ''.join(cards)))


def header_line(header):
    """Under the title: dataset, record files, when, and the code's version."""
    return '<p class="sub">%s</p>' % ' &middot; '.join(_e(v) for v in header if v)


def binary_section(binary, names):
    """MaxF, AP and the operating point, as the KITTI road benchmark and KittiSeg name them."""
    if not binary or binary.get('max_f') is None:
        return ''
    items = [('max_f', 'MaxF'), ('average_precision', 'AP'), ('precision', 'precision'),
             ('recall', 'recall'), ('fpr', 'FPR'), ('fnr', 'FNR')]
    cards = ''.join('<div class="card"><div class="v">%s</div><div class="k">%s</div></div>'
                    % (points(binary[key]), title) for key, title in items)
    return ('<h2>Two-class scores: %s against the rest</h2><p class="sub">In image space, as '
            'KittiSeg reports them; precision, recall, FPR and FNR at the MaxF threshold %.3f '
            'of the probability.</p><div class="cards">%s</div>'
            % (_e(names[binary['positive_class']]), binary['threshold'], cards))


def classes_section(result, names, palette):
    """Per class: colour, name, IoU bar (and with CRF), share of labelled pixels."""
    confusion = np.asarray(result['confusion'], np.float64)
    share = confusion.sum(1) / max(confusion.sum(), 1)
    has_crf = 'crf' in result
    rows = []
    for i, name in enumerate(names):
        iou = result['per_class_iou'][i]
        bars = '<div class="bar"><span style="width:%.1f%%"></span></div>' % (100 * (iou or 0))
        cells = ['<span class="swatch" style="background:rgb(%d,%d,%d)"></span>%s'
                 % (tuple(palette[i]) + (_e(name),)), bars, points(iou)]
        if has_crf:
            crf_iou = result['crf']['per_class_iou'][i]
            cells += ['<div class="bar"><span class="crf" style="width:%.1f%%"></span></div>'
                      % (100 * (crf_iou or 0)), points(crf_iou)]
        if 'boundary' in result:
            cells.append(points(result['boundary']['per_class_boundary_f'][i]))
        cells.append('%.1f%%' % (100 * share[i]))
        rows.append('<tr>%s</tr>' % ''.join('<td>%s</td>' % c for c in cells))
    head = (['class', 'IoU without CRF' if has_crf else 'IoU', '%']
            + (['IoU with CRF', '%'] if has_crf else [])
            + (['boundary F %'] if 'boundary' in result else []) + ['pixels'])
    return ('<h2>Per class, %%</h2><table class="classes" id="per-class"><thead><tr>%s</tr></thead>'
            '<tbody>%s</tbody></table>' % (''.join('<th>%s</th>' % h for h in head),
                                           ''.join(rows)))


def confusion_section(result, names):
    """Rows (ground truth) normalised to 100%; darker = more of the row. The headlined
    setting's matrix (the CRF's when it ran)."""
    confusion = np.asarray(result.get('crf', result)['confusion'], np.float64)
    rows = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    head = ''.join('<th class="col">%s</th>' % _e(n) for n in names)
    body = []
    for name, row in zip(names, rows):
        cells = ''.join('<td style="background:rgba(59,111,182,%.3f);color:%s">%s</td>'
                        % (v, '#fff' if v > 0.5 else '#222', '%.0f' % (100 * v) if v else '')
                        for v in row)
        body.append('<tr><th class="r">%s</th>%s</tr>' % (_e(name), cells))
    return ('<h2>Confusion %s (rows: ground truth, columns: prediction, %% of the row)</h2>'
            '<table class="heat"><tr><th></th>%s</tr>%s</table>'
            % (crf_setting(result), head, ''.join(body)))


def calibration_section(calibration, plot):
    """The reliability diagram: does a pixel predicted with 80% confidence prove right 80% of
    the time?"""
    if not calibration or not plot:
        return ''
    return ('<h2 id="calibration">Calibration</h2><p class="sub">Expected calibration error '
            '%s%% over %d labelled pixels (15 confidence bins; 0 when the top class probability '
            'is the chance of being right). Bars below the diagonal: over-confident.</p>'
            '<img class="plot" src="%s" alt="reliability diagram">'
            % (points(calibration['ece']), calibration['num_pixels'], _e(plot)))


def suspects_section(suspects, names, palette):
    """The regions where the model is confident and disagrees with the annotation, best-ranked
    first, each as image, annotation and prediction crops with the region boxed."""
    if suspects is None:
        return ''
    shown, total, setting = suspects['shown'], suspects['total'], suspects['setting']
    intro = ('<h2>Annotations that look wrong</h2><p class="sub">Connected regions of at '
             'least %d pixels where the model predicts one class, at a mean confidence of at '
             'least %s%%, and the annotation says another; ranked by area x confidence x the '
             'share of the model\'s own region of that class they cover, so that a whole object '
             'annotated as something else comes before the fringe of a large region. Either '
             'the annotation or the model is wrong there. %d found; all are in %s.</p>'
             % (setting['min_area'], points(setting['confidence']), total, suspects['csv']))
    if not shown:
        return '<section id="suspects">%s</section>' % intro
    parts = ['<section id="suspects">', intro, legend_html(names, palette)]
    for row, paths in shown:
        figures = ''.join('<figure><img src="%s" alt="%s"><figcaption>%s</figcaption></figure>'
                          % (_e(paths[kind]), title, title) for kind, title in
                          (('img', 'image'), ('annotation', 'annotation'),
                           ('prediction', 'prediction')))
        parts.append('<div class="sample"><div class="t">#%d %s (record %d): annotated %s, '
                     'predicted %s, %d pixels at %s%% confidence (box %d,%d %dx%d)</div>'
                     '<div class="pics crops">%s</div></div>'
                     % (row['rank'], _e(os.path.basename(row['image'])), row['record'],
                        _e(row['annotated_class']), _e(row['predicted_class']), row['area'],
                        points(row['confidence']), row['x'], row['y'], row['width'],
                        row['height'], figures))
    return ''.join(parts + ['</section>'])


def story_section(story):
    """The training story: which checkpoint and why, and the progress plot when there is one."""
    if not story:
        return ''
    plot = ('<img class="plot" src="%s" alt="training loss and validation mIoU">'
            % _e(story['plot']) if story.get('plot') else '<p>No training history in the run.</p>')
    return '<h2>Training</h2><p>%s</p>%s' % (_e(story['checkpoint_why']), plot)


def gallery_section(title, samples, rows, pictures, legend, note=''):
    """One row per sample (`samples`: record numbers): its five pictures and per-image IoU."""
    if not samples:
        return ''
    by_record = {r['record']: r for r in rows}  # file names can repeat; records cannot
    parts = ['<h2>%s</h2>%s%s' % (_e(title), '<p class="sub">%s</p>' % _e(note) if note else '',
                                  legend)]
    for record in samples:
        row = by_record[record]
        crf = ', with CRF %s' % points(row['crf_mean_iou']) if 'crf_mean_iou' in row else ''
        figures = ''.join('<figure><img src="%s" alt="%s"><figcaption>%s</figcaption></figure>'
                          % (_e(pictures[record][kind]), KIND_TITLES[kind], KIND_TITLES[kind])
                          for kind in SAMPLE_KINDS if kind in pictures[record])
        parts.append('<div class="sample"><div class="t">%s (record %d): mIoU %s%s</div>'
                     '<div class="pics">%s</div></div>'
                     % (_e(os.path.basename(row['filename'])), record, points(row['mean_iou']),
                        crf, figures))
    return ''.join(parts)


def legend_html(names, palette, void=True):
    """The legend of the classes (then void's, with `void`) as a paragraph of swatches."""
    return '<p class="legend">%s</p>' % ''.join(
        '<span><span class="swatch" style="background:rgb(%d,%d,%d)"></span>%s</span>'
        % (color + (_e(name),)) for name, color in legend_entries(palette, names, void=void))


def gallery_notes(gallery, num_images):
    """What each gallery holds, said where it holds every image (a small evaluation)."""
    shown = len(gallery['worst']) + len(gallery['best'])
    if shown < num_images:
        spread = ('; picked apart in record order, so that one sequence\'s neighbouring '
                  'frames do not fill a gallery')
        return ('The %d worst of %d images%s.' % (len(gallery['worst']), num_images, spread),
                'The %d best of %d images%s.' % (len(gallery['best']), num_images, spread))
    return ('These two galleries hold every one of the %d images, worst first.' % num_images,
            '')


def settings_section(settings, data):
    """The settings that produced the scores, and what was read (damaged files named)."""
    rows = ''.join('<tr><td>%s</td><td>%s</td></tr>' % (_e(k), _e(v)) for k, v in settings)
    warnings = ''.join('<p class="warn">%s</p>' % _e(line)
                       for line in data_warnings(data, max_names=10))
    return '<h2>Settings</h2>%s<table class="settings">%s</table>' % (warnings, rows)


def write_report_page(output_dir, title, result, rows, names, palette, gallery, pictures,
                      settings, story=None, audit=None, header=()):
    """Writes OUTPUT_DIR/report.html; returns its path.

    `gallery`: {'worst': [filename, ...], 'best': [...]}; `pictures`: {filename: {kind: path
    relative to output_dir}} (utils.visualization.SAMPLE_KINDS); `settings`: [(name, value)];
    `story`: {'checkpoint_why', 'plot' (relative path or None)} of a training run;
    `audit`: {'reliability' (relative path of the reliability diagram), 'suspects' ({'shown':
    utils.evaluation.reports.write_suspects' list, 'total', 'csv', 'setting': {'confidence',
    'min_area'}})}, either may be missing; `header`: strings under the title (dataset, records,
    date, code version).
    """
    audit = audit or {}
    legend = legend_html(names, palette)
    worst_note, best_note = gallery_notes(gallery, result['num_images'])
    body = ''.join([
        '<h1>%s</h1>' % _e(title), header_line(header), headline_section(result),
        binary_section(result.get('binary'), names), classes_section(result, names, palette),
        confusion_section(result, names),
        calibration_section(result.get('calibration'), audit.get('reliability')),
        suspects_section(audit.get('suspects'), names, palette), story_section(story),
        gallery_section('Worst images by mIoU %s' % crf_setting(result), gallery['worst'],
                        rows, pictures, legend, worst_note),
        gallery_section('Best images by mIoU %s' % crf_setting(result), gallery['best'], rows,
                        pictures, legend, best_note),
        settings_section(settings, result['data'])])
    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>%s</title>'
            '<style>%s</style></head><body>%s</body></html>\n' % (_e(title), STYLE, body))
    path = os.path.join(output_dir, REPORT_FILENAME)
    atomic_write_text(path, page)
    return path
