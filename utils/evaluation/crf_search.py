"""Tuning the dense CRF's appearance kernel by grid search on a model's own predictions.

Search on images that are not the validation set (e.g. a slice of train), then put the best
setting in the config (crf_bilateral_compat, crf_bilateral_sxy, crf_bilateral_srgb).
"""
import numpy as np
import tensorflow.compat.v1 as tf

from utils.evaluation.metrics import confusion_matrix, scores
from utils.evaluation.scoring import build_eval_graph, iterate_eval
from utils.inference.predictor import restore_model
from utils.crf import dense_crf
from utils.runtime import session_config


def collect_probabilities(config, checkpoint, record_spec, num_images):
    """[(image, label, probabilities)] of the first `num_images` records (for CRF search)."""
    with tf.Graph().as_default():
        graph = build_eval_graph(config, record_spec, num_images)
        with tf.Session(config=session_config()) as session:
            restore_model(session, checkpoint, config)
            return [(image, label, probs) for image, label, probs, _ in
                    iterate_eval(session, graph)]


def crf_search(samples, num_classes, iterations, compats, sxys, srgbs):
    """Grid search of the bilateral kernel (weight w1, widths theta_alpha, theta_beta).

    Returns {'no_crf_mean_iou', 'results': [{compat, sxy, srgb, mean_iou}], 'best': {...},
    'gain'} where gain is the best mIoU minus the mIoU without CRF.
    """
    base = np.zeros((num_classes, num_classes), np.int64)
    for _, label, probs in samples:
        base += confusion_matrix(label, probs.argmax(-1), num_classes)
    results = []
    for compat in compats:
        for sxy in sxys:
            for srgb in srgbs:
                hist = np.zeros_like(base)
                for image, label, probs in samples:
                    refined = dense_crf(image, probs, iterations, bilateral_compat=compat,
                                        bilateral_sxy=sxy, bilateral_srgb=srgb)
                    hist += confusion_matrix(label, refined, num_classes)
                results.append({'compat': compat, 'sxy': sxy, 'srgb': srgb,
                                'mean_iou': scores(hist)['mean_iou']})
    best = max(results, key=lambda r: r['mean_iou'])
    no_crf = scores(base)['mean_iou']
    return {'no_crf_mean_iou': no_crf, 'results': results, 'best': best,
            'gain': best['mean_iou'] - no_crf}
