"""Evaluation reports: metrics.json, confusion.csv, per-class Markdown table, per-image CSV,
and a confusion-matrix picture. Every file is written atomically."""
import csv
import io
import json
import os

import numpy as np

from utils.evaluation.metrics import points
from utils.evaluation.suspects import CSV_FIELDS as SUSPECT_FIELDS
from utils.visualization import matplotlib_text, write_jpeg
from utils.fileio import atomic_path, atomic_write_text


def write_reports(output_dir, result, rows, names, extra=None):
    """Writes metrics.json (with `extra`), confusion.csv, confusion.png, per_class.md and
    per_image.csv of an evaluation into `output_dir`."""
    write_metrics_json(os.path.join(output_dir, 'metrics.json'), result, extra)
    write_confusion_csv(os.path.join(output_dir, 'confusion.csv'), result['confusion'], names)
    write_confusion_png(os.path.join(output_dir, 'confusion.png'), result['confusion'], names)
    atomic_write_text(os.path.join(output_dir, 'per_class.md'), per_class_markdown(result, names))
    write_per_image_csv(os.path.join(output_dir, 'per_image.csv'), rows)


SUSPECTS_FILENAME = 'suspect_labels.csv'
SUSPECT_KINDS = ('img', 'annotation', 'prediction')


def write_suspects(output_dir, finder):
    """suspect_labels.csv (every region, best-ranked first) and, for the regions kept with
    crops, images/suspects/rankN_{img,annotation,prediction}.jpg. Returns [(row, {kind: path
    relative to output_dir})] of those, best-ranked first."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=SUSPECT_FIELDS)
    writer.writeheader()
    writer.writerows(finder.ranked_rows())
    atomic_write_text(os.path.join(output_dir, SUSPECTS_FILENAME), out.getvalue())
    shown = []
    for row, crops in finder.top():
        paths = {}
        for kind, crop in zip(SUSPECT_KINDS, crops):
            relative = os.path.join('images', 'suspects', 'rank%d_%s.jpg' % (row['rank'], kind))
            write_jpeg(os.path.join(output_dir, relative), crop)
            paths[kind] = relative
        shown.append((row, paths))
    return shown


def class_names_of(config):
    return list(config.class_names) or ['class_%d' % i for i in range(config.num_classes)]


def write_metrics_json(path, result, extra=None):
    """metrics.json: mean_iou, pixel_accuracy, mean_accuracy, fw_iou, per_class_iou, ..."""
    payload = dict(result)
    payload.update(extra or {})
    atomic_write_text(path, json.dumps(payload, indent=2))


def write_confusion_csv(path, hist, names):
    """Rows = ground truth, columns = prediction, in pixels."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(['ground_truth \\ prediction'] + names)
    for name, row in zip(names, np.asarray(hist)):
        writer.writerow([name] + [int(v) for v in row])
    atomic_write_text(path, out.getvalue())


def per_class_markdown(result, names):
    """A Markdown table of per-class IoU (and after CRF, when scored)."""
    has_crf = 'crf' in result
    boundary = result.get('boundary')
    head = ['class', 'IoU'] + (['IoU with CRF'] if has_crf else []) + (
        ['boundary F'] if boundary else [])
    lines = ['| %s |' % ' | '.join(head), '|%s' % ('---|' * len(head))]
    for i, name in enumerate(names):
        cells = [name, points(result['per_class_iou'][i])]
        if has_crf:
            cells.append(points(result['crf']['per_class_iou'][i]))
        if boundary:
            cells.append(points(boundary['per_class_boundary_f'][i]))
        lines.append('| %s |' % ' | '.join(cells))
    cells = ['**mean**', points(result['mean_iou'])]
    if has_crf:
        cells.append(points(result['crf']['mean_iou']))
    if boundary:
        cells.append(points(boundary['mean_boundary_f']))
    lines.append('| %s |' % ' | '.join(cells))
    return '\n'.join(lines) + '\n'


def write_per_image_csv(path, rows):
    out = io.StringIO()
    fields = list(rows[0]) if rows else ['filename']
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, out.getvalue())


def write_confusion_png(path, hist, names):
    """Row-normalised confusion matrix (what share of each true class went where)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    hist = np.asarray(hist, np.float64)
    with np.errstate(invalid='ignore', divide='ignore'):
        normalised = np.nan_to_num(hist / hist.sum(axis=1, keepdims=True))
    size = max(4, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(normalised, cmap='Blues', vmin=0, vmax=1)
    labels = [matplotlib_text(n) for n in names]
    ax.set_xticks(range(len(names)), labels, rotation=90)
    ax.set_yticks(range(len(names)), labels)
    ax.set_xlabel('prediction')
    ax.set_ylabel('ground truth')
    if len(names) <= 25:
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, '%.2f' % normalised[i, j], ha='center', va='center', fontsize=7,
                        color='white' if normalised[i, j] > 0.5 else 'black')
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(path) as tmp_path:
        fig.savefig(tmp_path, format='png', dpi=100)
    plt.close(fig)
