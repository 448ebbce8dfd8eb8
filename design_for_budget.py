"""From a compute budget to a trained, exported network: enumerates the MobileNet-v1 FCN
candidates of a deployment scenario (cameras x fps on a platform of so many GOPS), trains a
chosen set of those within budget, evaluates and exports each, measures its images/s here, and
writes the trade-off report and picture with the best candidate that meets both the budget and
the frame rate.

    python design_for_budget.py --scenario configs/scenarios/parking.yaml \
        --dataset_train camvid7_train.record --dataset_val camvid7_val.record \
        --work_dir runs/parking
    python design_for_budget.py --scenario configs/scenarios/parking.yaml --list   # counts only

Writes WORK_DIR/tradeoff.md, tradeoff.png and tradeoff.json; each candidate's run in
WORK_DIR/NAME (resumable: a rerun reads what is done) and its export in WORK_DIR/NAME_export.
"""
import dataclasses
import json
import os
import sys

from utils.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from tqdm import tqdm  # noqa: E402

from utils.cli import job_parser, positive_int, run_job, split_list  # noqa: E402
from utils.config import resolve_config  # noqa: E402
from utils.deploy.design import (best_candidate, choose_candidates,  # noqa: E402
                                 enumerate_candidates, load_scenario, nothing_fits_message,
                                 label_baseline, not_learned_reason, pareto_front,
                                 plot_tradeoff, report_markdown, score_exported)
from utils.deploy.export import benchmark_latency, export_model, load_exported  # noqa: E402
from utils.errors import ConfigError  # noqa: E402
from utils.evaluation.binary import positive_class_of  # noqa: E402
from utils.evaluation.metrics import percent  # noqa: E402
from utils.evaluation.reports import class_names_of  # noqa: E402
from utils.fileio import atomic_write_text  # noqa: E402
from utils.rundir import load_run  # noqa: E402
from utils.runtime import cpu_class, setup_tensorflow  # noqa: E402
from utils.training.variants import VariantRuns  # noqa: E402


def parse_args(argv=None):
    p = job_parser(__doc__)
    p.add_argument('--scenario', required=True,
                   help='scenario YAML (configs/scenarios/*.yaml)')
    p.add_argument('--work_dir', help='runs, exports and the report go here')
    p.add_argument('--dataset_train', help='training records converted with the scenario\'s '
                   'config')
    p.add_argument('--dataset_val', help='validation records (same conversion)')
    p.add_argument('--checkpoint_path', default='', help='pretrained MobileNet checkpoint '
                   '(default: train from scratch)')
    p.add_argument('--num_trained', type=positive_int, help='candidates to train (default: the '
                   'scenario\'s num_trained)')
    p.add_argument('--candidates', help='comma-separated candidate names to train instead '
                   '(see --list)')
    p.add_argument('--max_steps', type=positive_int, help='default: the scenario\'s')
    p.add_argument('--list', action='store_true', help='only print every candidate\'s '
                   'operations and whether it fits')
    p.add_argument('--retime', action='store_true', help='time the exported candidates again '
                   'on this machine (nothing is retrained) and rewrite the report')
    args = p.parse_args(argv)
    if not args.list and not (args.work_dir and args.dataset_train and args.dataset_val):
        p.error('--work_dir, --dataset_train and --dataset_val are required (or --list)')
    return args


def print_candidates(candidates):
    print('| candidate | MFLOPs/image | GOPS needed | fits |\n|---|---|---|---|')
    for c in candidates:
        print('| %s | %.0f | %.1f | %s |' % (c['name'], c['mflops'], c['gops_needed'],
                                             'yes' if c['fits'] else 'no'))


def chosen(args, scenario, candidates):
    """The candidates to train: --candidates (each must fit), else spread over the budget."""
    if not args.candidates:
        return choose_candidates(candidates, args.num_trained or scenario.num_trained)
    by_name = {c['name']: c for c in candidates}
    names = split_list(args.candidates)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError('--candidates: no candidate %s in scenario %s (see --list)'
                          % (', '.join(unknown), scenario.name))
    over = [n for n in names if not by_name[n]['fits']]
    if over:
        raise ConfigError('--candidates: %s need more than the budget of %g GOPS; only '
                          'candidates within it are trained' % (', '.join(over),
                                                                scenario.budget_gops))
    return [by_name[n] for n in names]


def measure(runs, candidate, scenario, class_names, seconds, retime=False):
    """Exports a trained candidate in the scenario's format at its input size, scores that
    model on the validation records at that size (mIoU, MaxF for two classes) and times it
    here; the row is kept in NAME.result.json so that a rerun reads it (and with `retime`
    only times the export again, e.g. on the target machine or an idle one)."""
    name = candidate['name']
    record = os.path.join(runs.work_dir, name + '.result.json')
    if os.path.exists(record):
        with open(record) as f:
            row = json.load(f)
        if 'baseline_mean_iou' not in row:  # kept before the baseline was
            row.update(label_baseline(runs.dataset_val, tuple(row['input_size']), class_names))
            atomic_write_text(record, json.dumps(row, indent=2))
        if retime:
            model = load_exported(row['export_dir'], scenario.format)
            row['images_per_s'] = 1000.0 / benchmark_latency(model, *row['input_size'])
            atomic_write_text(record, json.dumps(row, indent=2))
            print('%s: %.1f images/s (%s), timed again' % (name, row['images_per_s'],
                                                         scenario.format))
        return row
    config, checkpoint = load_run(runs.run_dir(name), log=lambda *_: None)
    export_dir = os.path.join(runs.work_dir, name + '_export')
    size = tuple(candidate['input_size'])
    if not os.path.exists(export_dir):
        export_model(config, checkpoint, export_dir, (scenario.format,), size)
    model = load_exported(export_dir, scenario.format)
    row = dict(candidate, **score_exported(model, runs.dataset_val, size, class_names,
                                           positive_class_of(config)),
               steps=scenario.max_steps, seconds=seconds,
               images_per_s=1000.0 / benchmark_latency(model, *size), export_dir=export_dir)
    atomic_write_text(record, json.dumps(row, indent=2))
    why = not_learned_reason(row)
    print('%s: val mIoU %s%s, %.1f images/s (%s)%s' % (
        name, percent(row['mean_iou']),
        ', MaxF %s' % percent(row['max_f']) if row['max_f'] is not None else '',
        row['images_per_s'], scenario.format, '; did not learn: %s' % why if why else ''))
    return row


def write_report(work_dir, rows, scenario):
    front = pareto_front(rows)
    best = best_candidate(rows, scenario)
    machine = cpu_class()
    text = report_markdown(rows, scenario, best, front, machine)
    atomic_write_text(os.path.join(work_dir, 'tradeoff.md'), text)
    atomic_write_text(os.path.join(work_dir, 'tradeoff.json'), json.dumps(
        {'scenario': scenario.name, 'rows': rows, 'pareto': front,
         'best': best and best['name']}, indent=2))
    plot_tradeoff(os.path.join(work_dir, 'tradeoff.png'), rows, scenario, front)
    print(text)
    print('Written to %s (tradeoff.md, tradeoff.png, tradeoff.json)' % work_dir)


def main(argv=None):
    args = parse_args(argv)
    setup_tensorflow()

    def work():
        scenario = load_scenario(args.scenario)
        if args.max_steps:
            scenario = dataclasses.replace(scenario, max_steps=args.max_steps)
        class_names = class_names_of(  # a bad config: one line, now
            resolve_config(scenario.config, class_table=False))
        cache = os.path.join(args.work_dir, 'candidates.json') if args.work_dir else None
        if args.work_dir:
            os.makedirs(args.work_dir, exist_ok=True)
        candidates = enumerate_candidates(
            scenario, cache, progress=lambda grid: tqdm(grid, desc='Counting operations',
                                                        unit='candidate', file=sys.stderr))
        if args.list:
            print_candidates(candidates)
            return 0
        if not any(c['fits'] for c in candidates):
            raise ConfigError(nothing_fits_message(scenario, candidates))
        picks = chosen(args, scenario, candidates)
        print('Training %d candidate(s) of %d within budget: %s'
              % (len(picks), sum(c['fits'] for c in candidates),
                 ', '.join(c['name'] for c in picks)))
        # Validated once, at the end, without the CRF: the candidates are scored as exported.
        runs = VariantRuns(scenario.config, args.work_dir, scenario.max_steps,
                           args.dataset_train, args.dataset_val, args.checkpoint_path,
                           eval_every=scenario.max_steps)
        variants = runs.prepare({c['name']: dict(c['changes'], crf=False) for c in picks})
        rows = []
        for candidate, (name, _, path) in zip(picks, variants):
            seconds = runs.train(name, path)
            rows.append(measure(runs, candidate, scenario, class_names, seconds, args.retime))
            runs.remove_checkpoints(name, keep_best=True)
        write_report(args.work_dir, rows, scenario)
        return 0

    return run_job(work)


if __name__ == '__main__':
    sys.exit(main())
