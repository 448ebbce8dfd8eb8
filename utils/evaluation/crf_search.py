"""Tuning the dense CRF's appearance kernel by grid search on a model's own predictions.

Search on images that are not the validation set (e.g. a slice of train), then put the best
setting in the config (crf_bilateral_compat, crf_bilateral_sxy, crf_bilateral_srgb,
crf_gaussian_compat).
"""
import dataclasses
import itertools
import json

import numpy as np
import tensorflow.compat.v1 as tf

from utils.data.pipeline import check_dataset
from utils.evaluation.metrics import confusion_matrix, points, scores
from utils.evaluation.scoring import build_eval_graph, iterate_eval
from utils.inference.predictor import restore_model
from utils.config import CRF_SEARCH_KEYS
from utils.crf import CrfPool
from utils.errors import ConfigError
from utils.runtime import session_config


def collect_probabilities(config, checkpoint, record_spec, num_images, log=print):
    """[(image, label, probabilities)] of the first `num_images` records (for CRF search),
    the record files checked first as evaluation checks them."""
    files = check_dataset(record_spec, config.num_classes, log)
    with tf.Graph().as_default():
        graph = build_eval_graph(config, record_spec, num_images,
                                 num_records=sum(f.count for f in files))
        with tf.Session(config=session_config()) as session:
            restore_model(session, checkpoint, config)
            return [(image, label, probs) for image, label, probs, _ in
                    iterate_eval(session, graph)]


def crf_search(samples, num_classes, base_params, grid, crf_pool=None):
    """Grid search of the CRF settings in `grid` ({config key of CRF_SEARCH_KEYS: values};
    keys left out keep `base_params`' value, Config.crf_params()), each setting's CRF over the
    images on `crf_pool` (all cores) when given.

    Returns {'no_crf_mean_iou', 'results': [{CRF_SEARCH_KEYS..., 'mean_iou'}], 'best': {...},
    'gain'} where gain is the best mIoU minus the mIoU without CRF.
    """
    pool = crf_pool or CrfPool(workers=1)
    base = np.zeros((num_classes, num_classes), np.int64)
    for _, label, probs in samples:
        base += confusion_matrix(label, probs.argmax(-1), num_classes)
    results = []
    axes = [grid.get(key) or (base_params[key],) for key in CRF_SEARCH_KEYS]
    for values in itertools.product(*axes):
        setting = dict(zip(CRF_SEARCH_KEYS, values))
        hist = np.zeros_like(base)
        for label, refined in pool.map(((label, image, probs)
                                        for image, label, probs in samples),
                                       dict(base_params, **setting)):
            hist += confusion_matrix(label, refined, num_classes)
        results.append(dict(setting, mean_iou=scores(hist)['mean_iou']))
    best = max(results, key=lambda r: r['mean_iou'])
    no_crf = scores(base)['mean_iou']
    return {'no_crf_mean_iou': no_crf, 'results': results, 'best': best,
            'gain': best['mean_iou'] - no_crf}


def format_search_table(result):
    """Markdown table of a crf_search result, best first, with the gain over no CRF."""
    lines = ['| %s | mIoU %% | gain (points) |' % ' | '.join(CRF_SEARCH_KEYS),
             '|---' * (len(CRF_SEARCH_KEYS) + 2) + '|']
    for r in sorted(result['results'], key=lambda r: -r['mean_iou']):
        lines.append('| %s | %s | %+.1f |' % (
            ' | '.join('%g' % r[key] for key in CRF_SEARCH_KEYS), points(r['mean_iou']),
            100 * (r['mean_iou'] - result['no_crf_mean_iou'])))
    lines.append('| no CRF |%s %s | |' % (' |' * (len(CRF_SEARCH_KEYS) - 1),
                                         points(result['no_crf_mean_iou'])))
    return '\n'.join(lines)


# The short names of crf_search.json files written before one name served each setting.
OLD_SEARCH_NAMES = {'compat': 'crf_bilateral_compat', 'sxy': 'crf_bilateral_sxy',
                    'srgb': 'crf_bilateral_srgb', 'gaussian_compat': 'crf_gaussian_compat'}


def searched_crf_settings(search_path):
    """The config keys of the best CRF setting of a crf_search.json (evaluate.py
    --crf_search, also of earlier versions); a file that is not one is a ConfigError."""
    try:
        with open(search_path) as f:
            best = json.load(f)['best']
        best = {OLD_SEARCH_NAMES.get(key, key): value for key, value in best.items()}
        settings = {key: float(best[key]) for key in CRF_SEARCH_KEYS[:3]}
        if CRF_SEARCH_KEYS[3] in best:
            settings[CRF_SEARCH_KEYS[3]] = float(best[CRF_SEARCH_KEYS[3]])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError('--crf_from %s: not a crf_search.json of evaluate.py --crf_search '
                          '(%s)' % (search_path, e)) from None
    return settings


def with_crf_settings(config, settings):
    """`config` with the CRF on, at `settings` (searched_crf_settings); values out of range
    are a ConfigError (the config validates itself)."""
    return dataclasses.replace(config, crf=True, **settings)
