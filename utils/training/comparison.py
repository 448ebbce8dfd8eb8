"""Training runs side by side: their validation and loss curves on one picture, the per-class
IoU of each run's best validation, the settings that differ, as compare.html (offline, no
script), compare.png, and TensorBoard HParams summaries.

    runs = [read_run(path) for path in paths]
    write_comparison(runs, 'compare')   # compare/compare.html, compare.png, hparams/

Reads only what a run has written whole: config.yaml (written once, atomically), the
JSON-lines histories (a torn last line of a run still training is skipped), never a
checkpoint. The best validation is the one with the highest mIoU in eval/metrics.jsonl (the
one whose checkpoint training keeps in best/).
"""
import dataclasses
import datetime
import html
import os
import typing

from utils.config import resolve_config
from utils.errors import ConfigError
from utils.evaluation.report_page import STYLE
from utils.fileio import atomic_path, atomic_write_text
from utils.rundir import RunDir
from utils.training.monitoring import read_jsonl, smoothed
from utils.visualization import matplotlib_text

COMPARE_PAGE = 'compare.html'
COMPARE_PLOT = 'compare.png'
HPARAMS_DIR = 'hparams'  # tensorboard --logdir OUTPUT_DIR/hparams
# Keys that differ between any two runs and say nothing about the recipe.
UNCOMPARED_KEYS = ('output_dir',)
# Recipe keys every HParams row shows, beside those that differ.
CORE_HPARAMS = ('model', 'num_classes', 'max_steps', 'batch_size', 'crop_size', 'learning_rate',
                'lr_schedule', 'optimizer', 'precision')


@dataclasses.dataclass
class RunRecord:
    """What compare reads of one run: its config (a dict), histories, best validation."""
    name: str
    path: str
    config: dict
    history: list  # train/history.jsonl records
    validations: list  # eval/metrics.jsonl records
    best: typing.Optional[dict]  # the validation with the highest mIoU, or None

    @property
    def class_names(self):
        return tuple(self.config['class_names']) or tuple(
            'class %d' % i for i in range(self.config['num_classes']))

    @property
    def last_step(self):
        return max([h['step'] for h in self.history] + [v['step'] for v in self.validations]
                   + [0])

    @property
    def status(self):
        if self.last_step >= self.config['max_steps']:
            return 'finished (%d steps)' % self.config['max_steps']
        return 'at step %d of %d (training, or stopped)' % (self.last_step,
                                                             self.config['max_steps'])


def read_run(path):
    """The RunRecord of the training run at `path`; ConfigError for a folder that is not one."""
    run = RunDir(path)
    if not os.path.isfile(run.config_path):
        raise ConfigError('%s is not a training run (no config.yaml in it): give folders that '
                          'train.py wrote with --output_dir' % path)
    try:
        config = resolve_config(run.config_path).to_dict()
    except ConfigError as e:
        raise ConfigError('%s: its config.yaml cannot be read (%s)' % (path, e)) from None
    validations = [v for v in read_jsonl(run.metrics_path) if 'mean_iou' in v and 'step' in v]
    best = max(validations, key=lambda v: v['mean_iou'], default=None)
    return RunRecord(name=os.path.basename(os.path.normpath(path)), path=path, config=config,
                     history=[h for h in read_jsonl(run.history_path) if 'step' in h],
                     validations=validations, best=best)


def name_runs(runs):
    """Gives runs of the same folder name their path instead, so that every name is unique."""
    names = [r.name for r in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = os.path.normpath(run.path)
    return runs


def differing_keys(runs):
    """Config keys whose values are not the same in every run, in config order."""
    keys = [k for k in runs[0].config if k not in UNCOMPARED_KEYS]
    return [k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1]


def class_groups(runs):
    """Runs grouped by their class names (per-class IoU compares within a group only)."""
    groups = {}
    for run in runs:
        groups.setdefault(run.class_names, []).append(run)
    return list(groups.items())


def plot_comparison(runs, path):
    """compare.png: validation mIoU against step and against training minutes, training loss
    (smoothed) against step; one colour per run."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (by_step, by_time, loss) = plt.subplots(1, 3, figsize=(15, 4.4))
    for index, run in enumerate(runs):
        colour, label = 'C%d' % (index % 10), matplotlib_text(run.name)
        steps = [v['step'] for v in run.validations]
        iou = [100 * v['mean_iou'] for v in run.validations]
        by_step.plot(steps, iou, 'o-', color=colour, label=label)
        timed = [(v['train_seconds'] / 60, 100 * v['mean_iou']) for v in run.validations
                 if 'train_seconds' in v]
        if timed:
            by_time.plot(*zip(*timed), 'o-', color=colour, label=label)
        if run.history:
            loss.plot([h['step'] for h in run.history],
                      smoothed([h['loss'] for h in run.history]), color=colour, label=label)
    by_step.set_xlabel('step')
    by_time.set_xlabel('training minutes (time in training steps)')
    for axis in (by_step, by_time):
        axis.set_ylabel('validation mIoU (%)')
    loss.set_xlabel('step')
    loss.set_ylabel('training loss (smoothed)')
    for axis in (by_step, by_time, loss):
        axis.grid(alpha=0.3)
    handles, labels = by_step.get_legend_handles_labels()
    if not handles:
        handles, labels = loss.get_legend_handles_labels()
    fig.legend(handles, labels, loc='lower center', ncol=min(len(runs), 4), frameon=False,
               fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    with atomic_path(path) as tmp_path:
        fig.savefig(tmp_path, format='png', dpi=80)
    plt.close(fig)


def _e(text):
    return html.escape(str(text))


def _pct(value):
    return '-' if value is None or value != value else '%.1f' % (100 * value)


def _minutes(run):
    timed = [h['train_seconds'] for h in run.history if 'train_seconds' in h]
    return '%.1f' % (timed[-1] / 60) if timed else '-'


def runs_section(runs):
    rows = []
    for run in runs:
        best = run.best
        rows.append('<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%s</td>'
                    '<td>%s</td><td>%s</td><td>%s</td></tr>' % (
                        _e(run.name), _e(run.config['dataset_name'] or '-'),
                        _e(run.config['model']), _e(run.status), run.config['num_classes'],
                        _pct(best['mean_iou']) if best else 'no validation yet',
                        best['step'] if best else '-', _minutes(run), _e(run.path)))
    return ('<h2>Runs</h2><table class="classes" id="runs"><thead><tr><th>run</th>'
            '<th>dataset</th><th>network</th><th>status</th><th>classes</th>'
            '<th>best val mIoU (%, no CRF)</th><th>at step</th><th>training minutes</th>'
            '<th>folder</th></tr></thead><tbody>' + ''.join(rows) + '</tbody></table>')


def warnings_section(runs):
    notes = []
    if len(runs) == 1:
        notes.append('Only one run was given: it is shown alone; give two or more run '
                     'folders to compare them.')
    datasets = {r.config['dataset_name'] for r in runs}
    groups = class_groups(runs)
    if len(datasets) > 1 or len(groups) > 1:
        notes.append('These runs are of different datasets or classes (%s): the curves share '
                     'one plot, but mIoU over different classes is not the same measure, and '
                     'per-class IoU is compared only between runs of the same classes.'
                     % _e('; '.join('%s: %s' % (', '.join(r.name for r in group),
                                                 '%d classes' % len(names))
                                    for names, group in groups)))
    for run in runs:
        if not run.validations:
            notes.append('%s has no validation yet: no scores to compare.' % _e(run.name))
        elif run.best['num_images'] != max(r.best['num_images'] for r in runs if r.best):
            notes.append('%s was validated on %d images, fewer than the others: its scores '
                         'are of another sample.' % (_e(run.name), run.best['num_images']))
    return ''.join('<p class="warn">%s</p>' % n for n in notes)


def classes_section(names, group):
    """Per class, each run's IoU at its best validation; the best of each row marked."""
    scored = [r for r in group if r.best]
    if not scored:
        return ''
    head = ''.join('<th>%s</th>' % _e(r.name) for r in scored)
    rows = []
    for index, name in enumerate(list(names) + ['mIoU']):
        values = [(r.best['per_class_iou'][index] if index < len(names) else
                   r.best['mean_iou']) for r in scored]
        known = [v for v in values if v is not None and v == v]
        top = max(known) if known else None
        cells = ''.join('<td%s>%s%s</td>' % (
            ' class="top"' if v is not None and v == top and len(scored) > 1 else '', _pct(v),
            ' &#9733;' if v is not None and v == top and len(scored) > 1 else '')
            for v in values)
        rows.append('<tr><td>%s</td>%s</tr>' % ('<b>mIoU</b>' if index == len(names)
                                                else _e(name), cells))
    return ('<h2>Per-class IoU at each run\'s best validation (%%, no CRF; &#9733; the best '
            'of the row)</h2><table class="classes per-class"><thead><tr><th>class</th>%s'
            '</tr></thead><tbody>%s</tbody></table>' % (head, ''.join(rows)))


def settings_section(runs, keys):
    if len(runs) == 1:
        return ''
    if not keys:
        return '<h2>Settings that differ</h2><p>None: every config key is the same.</p>'
    head = ''.join('<th>%s</th>' % _e(r.name) for r in runs)
    rows = ''.join('<tr><td>%s</td>%s</tr>' % (_e(k), ''.join(
        '<td>%s</td>' % _e(r.config.get(k)) for r in runs)) for k in keys)
    return ('<h2>Settings that differ</h2><table class="classes settings" id="differ">'
            '<thead><tr><th>key</th>%s</tr></thead><tbody>%s</tbody></table>' % (head, rows))


def write_page(runs, output_dir, keys):
    parts = ['<h1>Comparing %d training run%s</h1>' % (len(runs), 's' if len(runs) > 1 else ''),
             '<p class="sub">Written %s by compare_runs.py from what the runs had written by '
             'then. Scores are validation mIoU without CRF, as training records them.</p>'
             % datetime.datetime.now().strftime('%Y-%m-%d %H:%M'),
             warnings_section(runs), runs_section(runs),
             '<h2>Curves</h2><img class="plot" src="%s" alt="validation mIoU and training loss '
             'of every run">' % COMPARE_PLOT]
    parts += [classes_section(names, group) for names, group in class_groups(runs)]
    parts.append(settings_section(runs, keys))
    parts.append('<h2>In TensorBoard</h2><p>The same settings and best scores as HParams: '
                 '<code>tensorboard --logdir %s</code> (the HPARAMS tab).</p>'
                 % _e(os.path.join(output_dir, HPARAMS_DIR)))
    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Run comparison'
            '</title><style>%s td.top { font-weight: 600; color: #1a5e1a; }</style></head>'
            '<body>%s</body></html>' % (STYLE, ''.join(parts)))
    path = os.path.join(output_dir, COMPARE_PAGE)
    atomic_write_text(path, page)
    return path


def _hparam_value(value):
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def write_hparams(runs, output_dir, keys):
    """TensorBoard HParams summaries (the hparams plugin's v1 protos): the experiment in
    OUTPUT_DIR/hparams, one session per run beside it with its settings and best scores."""
    import tensorflow.compat.v1 as tf
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams import summary as hparams_summary

    names = list(dict.fromkeys(list(CORE_HPARAMS) + list(keys)))
    metrics = [('best_mean_iou', 'best validation mIoU'), ('best_step', 'step of the best'),
               ('last_mean_iou', 'last validation mIoU'), ('train_minutes', 'training minutes')]
    root = os.path.join(output_dir, HPARAMS_DIR)
    with tf.summary.FileWriter(root) as writer:
        writer.add_summary(hparams_summary.experiment_pb(
            hparam_infos=[api_pb2.HParamInfo(name=n) for n in names],
            metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag),
                                             display_name=title) for tag, title in metrics]))
    for index, run in enumerate(runs):
        timed = [h['train_seconds'] for h in run.history if 'train_seconds' in h]
        values = {'best_mean_iou': run.best['mean_iou'] if run.best else None,
                  'best_step': run.best['step'] if run.best else None,
                  'last_mean_iou': run.validations[-1]['mean_iou'] if run.validations else None,
                  'train_minutes': timed[-1] / 60 if timed else None}
        folder = os.path.join(root, '%02d_%s' % (index, run.name.replace(os.sep, '_')))
        with tf.summary.FileWriter(folder) as writer:
            writer.add_summary(hparams_summary.session_start_pb(
                hparams={n: _hparam_value(run.config.get(n)) for n in names}))
            writer.add_summary(tf.Summary(value=[
                tf.Summary.Value(tag=tag, simple_value=float(value))
                for tag, value in values.items() if value is not None]), run.last_step)
            writer.add_summary(hparams_summary.session_end_pb(api_pb2.STATUS_SUCCESS))
    return root


def write_comparison(runs, output_dir):
    """compare.html, compare.png and hparams/ of `runs` (RunRecords) in `output_dir`; returns
    the page's path."""
    runs = name_runs(runs)
    os.makedirs(output_dir, exist_ok=True)
    keys = differing_keys(runs)
    plot_comparison(runs, os.path.join(output_dir, COMPARE_PLOT))
    write_hparams(runs, output_dir, keys)
    return write_page(runs, output_dir, keys)
