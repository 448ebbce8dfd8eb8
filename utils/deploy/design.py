"""From a deployment scenario (cameras x fps on a platform of so many GOPS) to MobileNet-v1 FCN
candidates: the scenario file, the enumeration with operation counts (the same code as
count_ops.py), the choice of candidates to train, the Pareto front and the trade-off report.

A scenario file (YAML, configs/scenarios/*.yaml):

    config: ../camvid7_mobilenet_fcn.yaml  # dataset + training recipe (relative to this file)
    cameras: 4
    fps: 15
    budget_gops: 70
    input_sizes: [[320, 480]]            # deployment input sizes (height, width) allowed
    depth_multipliers: [0.25, 0.5, 0.75, 1.0]
    classifier_kernels: [1, 3, 7]
    classifier_depths: [256, 512, 1024]
    num_trained: 4                       # candidates trained by default
    max_steps: 1000                      # training steps per candidate
    format: onnx                         # exported format whose images/s is measured
"""
import dataclasses
import itertools
import json
import os

import numpy as np
import yaml

from utils.config import resolve_config
from utils.deploy.export import FORMATS
from utils.deploy.operations import budget, count_ops
from utils.deploy.tflite_model import record_pairs
from utils.errors import ConfigError
from utils.evaluation.metrics import confusion_matrix, majority_baseline, percent
from utils.evaluation.scoring import Scorer
from utils.fileio import atomic_path, atomic_write_text


# A candidate learned when its val mIoU is at least this many times the mIoU of predicting the
# most frequent class everywhere (`baseline`): below it, it learned little beyond the class
# frequencies (demo val: predicting road everywhere scores 12.1; the demo MobileNet after 150
# steps scores 66).
LEARNED_FACTOR = 2.0

# The exported formats a scenario can time (utils.deploy.export.FORMATS but the calibrated one).
SCENARIO_FORMATS = tuple(f for f in FORMATS if f != 'tflite_int8')


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A deployment scenario; see the module docstring for the file's keys."""
    name: str
    config: str
    cameras: int
    fps: float
    budget_gops: float
    input_sizes: tuple = ((320, 480),)
    depth_multipliers: tuple = (0.25, 0.5, 0.75, 1.0)
    classifier_kernels: tuple = (1, 3, 7)
    classifier_depths: tuple = (256, 512, 1024)
    num_trained: int = 4
    max_steps: int = 1000
    format: str = 'onnx'

    @property
    def images_per_second(self):
        return self.cameras * self.fps


def load_scenario(path):
    """The Scenario of a YAML file; unknown keys, missing ones and impossible values are a
    ConfigError naming the file."""
    try:
        with open(path) as f:
            values = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError('scenario %s cannot be read (%s)' % (path, e)) from None
    fields = {f.name for f in dataclasses.fields(Scenario)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError('scenario %s: unknown key(s) %s (known: %s)'
                          % (path, ', '.join(unknown), ', '.join(sorted(fields))))
    values.setdefault('name', os.path.splitext(os.path.basename(path))[0])
    try:
        values['config'] = os.path.join(os.path.dirname(os.path.abspath(path)),
                                        values['config'])
        for key, kind in (('cameras', int), ('fps', float), ('budget_gops', float),
                          ('num_trained', int), ('max_steps', int)):
            if key in values:
                values[key] = kind(values[key])
        values['input_sizes'] = tuple(tuple(int(v) for v in s) for s in
                                      values.get('input_sizes', Scenario.input_sizes))
        for key in ('depth_multipliers', 'classifier_kernels', 'classifier_depths'):
            values[key] = tuple(values.get(key, getattr(Scenario, key)))
        scenario = Scenario(**values)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError('scenario %s: %s; it needs config, cameras, fps and budget_gops'
                          % (path, e)) from None
    if min(scenario.cameras, scenario.fps, scenario.budget_gops, scenario.num_trained,
           scenario.max_steps) <= 0:
        raise ConfigError('scenario %s: cameras, fps, budget_gops, num_trained and max_steps '
                          'must be > 0' % path)
    if scenario.format not in SCENARIO_FORMATS:
        raise ConfigError('scenario %s: format %r is not one of %s (tflite_int8 needs '
                          'calibration records: export the chosen candidate with export_model.py)'
                          % (path, scenario.format, ', '.join(SCENARIO_FORMATS)))
    return scenario


def candidate_name(changes, input_size):
    """'d0.5_k7_c1024_320x480'."""
    return 'd%g_k%d_c%d_%dx%d' % (changes['depth_multiplier'], changes['classifier_kernel'],
                                   changes['classifier_depth'], input_size[0], input_size[1])


def enumerate_candidates(scenario, cache_path=None, log=print, progress=None):
    """Every MobileNet-v1 FCN of the scenario's grid: [{'name', 'changes' (config keys),
    'input_size', 'mflops' (per image, count_ops), 'gops_needed', 'fits'}], cheapest first.
    Counts are kept in `cache_path` (JSON) so that a rerun does not count again.
    `progress`, if given, wraps the grid's list (e.g. a tqdm bar): a count takes about half a
    second per candidate."""
    config = resolve_config(scenario.config, class_table=False)
    cache = {}
    if cache_path and os.path.exists(cache_path):
        with open(cache_path) as f:
            cache = json.load(f)
    candidates = []
    grid = list(itertools.product(scenario.input_sizes, scenario.depth_multipliers,
                                  scenario.classifier_kernels, scenario.classifier_depths))
    for size, multiplier, kernel, depth in progress(grid) if progress else grid:
        changes = {'model': 'mobilenet_v1_fcn', 'depth_multiplier': multiplier,
                   'classifier_kernel': kernel, 'classifier_depth': depth}
        name = candidate_name(changes, size)
        key = '%s/%d classes/%s' % (name, config.num_classes, config.final_endpoint)
        if key not in cache:
            args = dict(config.network_args(), **changes)
            cache[key] = sum(v for _, v in count_ops(size, config.num_classes, **args))
        need = budget(cache[key], scenario.cameras, scenario.fps, scenario.budget_gops)
        candidates.append({'name': name, 'changes': changes, 'input_size': list(size),
                           'mflops': cache[key], 'gops_needed': need['gops_needed'],
                           'fits': need['fits']})
    if cache_path:
        atomic_write_text(cache_path, json.dumps(cache, indent=1))
    log('%d candidates counted; %d within %g GOPS' % (
        len(candidates), sum(c['fits'] for c in candidates), scenario.budget_gops))
    return sorted(candidates, key=lambda c: (c['mflops'], c['name']))


def score_exported(model, record_spec, size, class_names, positive_class=None):
    """{mean_iou, max_f (None but for two-class scores), baseline fields (`baseline`)} of an
    exported model (utils.deploy.export.load_exported) on the images of `record_spec` resized
    to its input `size` (height, width), as it would run deployed; MaxF of `positive_class`'s
    probability when given."""
    scorer = Scorer(len(class_names), crf=False, positive_class=positive_class)
    for image, label in record_pairs(record_spec, size):
        classes, probabilities = model(image[None])
        if positive_class is not None:
            scorer.binary.add(label, probabilities[0][..., positive_class])
        scorer.add(label, classes[0])
    result = scorer.result()
    return dict(mean_iou=result['mean_iou'], max_f=(result.get('binary') or {}).get('max_f'),
                **baseline(scorer.hist, class_names))


def label_baseline(record_spec, size, class_names):
    """The baseline fields (`baseline`) of the labels of `record_spec` at `size`, without a
    model (for rows scored before they were kept)."""
    hist = np.zeros((len(class_names),) * 2, np.int64)
    for _, label in record_pairs(record_spec, size):
        hist += confusion_matrix(label, label, len(class_names))
    return baseline(hist, class_names)


def baseline(hist, class_names):
    """{baseline_mean_iou, baseline_class}: the mIoU of predicting the most frequent class of
    the ground truth everywhere, and that class's name."""
    majority, mean_iou = majority_baseline(hist)
    return {'baseline_mean_iou': mean_iou,
            'baseline_class': None if majority is None else class_names[majority]}


def not_learned_reason(row):
    """Why a scored row shows that its candidate did not learn, or None: its mIoU is below
    LEARNED_FACTOR times the baseline's (a network that learned only the class frequencies)."""
    if row['mean_iou'] >= LEARNED_FACTOR * row['baseline_mean_iou'] and row['mean_iou'] > 0:
        return None
    return ('val mIoU %s, less than %g times the %s of predicting %s everywhere'
            % (percent(row['mean_iou']), LEARNED_FACTOR, percent(row['baseline_mean_iou']),
               row['baseline_class']))


def nothing_fits_message(scenario, candidates):
    """The one line for a scenario no candidate fits: by how much the cheapest misses."""
    cheapest = min(candidates, key=lambda c: c['gops_needed'])
    return ('no candidate fits scenario %s (%d camera(s) x %g fps within %g GOPS): the cheapest, '
            '%s, needs %.1f GOPS, %.1f (%.0f%%) over; raise budget_gops, lower cameras, fps or '
            'input_sizes' % (scenario.name, scenario.cameras, scenario.fps, scenario.budget_gops,
                             cheapest['name'], cheapest['gops_needed'],
                             cheapest['gops_needed'] - scenario.budget_gops,
                             100 * (cheapest['gops_needed'] / scenario.budget_gops - 1)))


def choose_candidates(candidates, count):
    """`count` of the candidates within budget, spread over it: the two largest (most
    operations, usually the most accurate) and the rest evenly over the cheaper ones."""
    fitting = [c for c in candidates if c['fits']]
    if len(fitting) <= count:
        return fitting
    top = min(2, count)
    rest = fitting[:-top]
    picks = [rest[int(i)] for i in np.linspace(0, len(rest), count - top, endpoint=False)]
    chosen = {c['name'] for c in picks + fitting[-top:]}
    return [c for c in fitting if c['name'] in chosen]


def pareto_front(rows, cost='gops_needed', quality='mean_iou'):
    """Names of the rows no other row beats on both lower `cost` and higher `quality`."""
    front = []
    for row in rows:
        if not any(o[cost] <= row[cost] and o[quality] >= row[quality]
                   and (o[cost] < row[cost] or o[quality] > row[quality]) for o in rows):
            front.append(row['name'])
    return front


def usable_rows(rows, scenario):
    """The rows within the budget and at or above the frame rate."""
    return [r for r in rows if r['gops_needed'] <= scenario.budget_gops
            and r['images_per_s'] >= scenario.images_per_second]


def best_candidate(rows, scenario):
    """The most accurate usable row that learned (`not_learned_reason`), or None."""
    return max((r for r in usable_rows(rows, scenario) if not not_learned_reason(r)),
               key=lambda r: r['mean_iou'], default=None)


def report_markdown(rows, scenario, best, front, machine):
    """The trade-off table (Markdown) and the verdict."""
    binary = any(r.get('max_f') is not None for r in rows)
    head = ('| candidate | MFLOPs/image | GOPS needed | val mIoU |%s %s images/s | fits budget '
            '| meets %g images/s | Pareto |' % (' MaxF |' if binary else '', scenario.format,
                                                scenario.images_per_second))
    lines = ['# Scenario %s: %d camera(s) x %g fps = %g images/s within %g GOPS'
             % (scenario.name, scenario.cameras, scenario.fps, scenario.images_per_second,
                scenario.budget_gops), '',
             'Each candidate trained %d steps (%s in all); val mIoU of the exported %s model at '
             'its input size, and its images/s at batch 1, measured on %s.'
             % (scenario.max_steps, _duration(sum(r.get('seconds') or 0 for r in rows)),
                scenario.format, machine), '', head,
             '|---' * (head.count('|') - 1) + '|']
    for r in sorted(rows, key=lambda r: r['gops_needed']):
        lines.append('| %s | %.0f | %.1f | %.1f%s |%s %.1f | %s | %s | %s |' % (
            r['name'], r['mflops'], r['gops_needed'], 100 * r['mean_iou'],
            ' (did not learn)' if not_learned_reason(r) else '',
            (' %.1f |' % (100 * r['max_f']) if r.get('max_f') is not None else ' - |')
            if binary else '', r['images_per_s'],
            'yes' if r['gops_needed'] <= scenario.budget_gops else 'no',
            'yes' if r['images_per_s'] >= scenario.images_per_second else 'no',
            'yes' if r['name'] in front else ''))
    lines.append('')
    unlearned = [(r['name'], not_learned_reason(r)) for r in rows if not_learned_reason(r)]
    for name, why in unlearned:
        lines.append('- %s did not learn in %d steps: %s. Train longer (--max_steps) or check '
                     'the learning rate before judging its design.' % (name, scenario.max_steps,
                                                                       why))
    if unlearned:
        lines.append('')
    lines.append('Best candidate meeting the budget and the frame rate: %s' % (
        '**%s** (val mIoU %.1f, %.1f GOPS, %.1f images/s): %s' % (
            best['name'], 100 * best['mean_iou'], best['gops_needed'], best['images_per_s'],
            best['export_dir']) if best else none_usable(rows, scenario)))
    return '\n'.join(lines) + '\n'


def none_usable(rows, scenario):
    """The verdict's words when no candidate is best: none meets the budget and frame rate, or
    those that do did not learn."""
    usable = usable_rows(rows, scenario)
    if usable:
        return ('none: the %d candidate(s) meeting them did not learn (above); no design is '
                'named from scores that show no learning' % len(usable))
    return 'none'



def _duration(seconds):
    return '%d min' % round(seconds / 60) if seconds else 'time not recorded'


def plot_tradeoff(path, rows, scenario, front):
    """tradeoff.png: mIoU against GOPS (budget line, Pareto front) and against measured
    images/s (the cameras x fps line)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ops_axis, speed_axis) = plt.subplots(1, 2, figsize=(11, 4.5))
    for axis, key, line, label in (
            (ops_axis, 'gops_needed', scenario.budget_gops, 'budget %g GOPS'),
            (speed_axis, 'images_per_s', scenario.images_per_second, 'needed %g images/s')):
        for r in rows:
            unlearned = not_learned_reason(r)
            axis.scatter(r[key], 100 * r['mean_iou'], s=36, zorder=3, color='tab:gray'
                         if unlearned else 'tab:red' if r['name'] in front else 'tab:blue')
            axis.annotate(r['name'] + (' (did not learn)' if unlearned else ''),
                          (r[key], 100 * r['mean_iou']), fontsize=7, xytext=(4, 3),
                          textcoords='offset points')
        axis.axvline(line, color='tab:gray', ls='--', label=label % line)
        axis.set_ylabel('validation mIoU (%)')
        axis.grid(alpha=0.3)
        axis.margins(x=0.25, y=0.12)  # room for the names beside the points
        axis.legend(loc='best', fontsize=8)
    points = sorted((r['gops_needed'], 100 * r['mean_iou']) for r in rows if r['name'] in front)
    if points:
        ops_axis.plot(*zip(*points), color='tab:red', lw=1, label='Pareto front')
        ops_axis.legend(loc='best', fontsize=8)
    ops_axis.set_xlabel('GOPS needed for %d x %g fps' % (scenario.cameras, scenario.fps))
    speed_axis.set_xlabel('measured images/s (%s, batch 1)' % scenario.format)
    fig.suptitle('Scenario %s' % scenario.name)
    fig.tight_layout()
    with atomic_path(path) as tmp_path:
        fig.savefig(tmp_path, format='png', dpi=90)
    plt.close(fig)
