"""Validation: scores a checkpointed model over full-size images and draws the sample JPEGs."""
import os

import numpy as np
import tensorflow.compat.v1 as tf

from nets import build_network
from utils.crf import dense_crf
from utils.data import eval_dataset
from utils.metrics import confusion_matrix, scores
from utils.tfrecord import count_records, resolve_record_paths
from utils.visualization import make_palette, write_sample_jpegs


def build_eval_graph(config, record_spec, reuse):
    """Validation tensors for one image at a time at its own size.

    Returns a dict: 'init' (re-runs the pass), 'num_images', and per-image tensors 'image'
    uint8 [1, h, w, 3], 'label' int32 [1, h, w], 'probabilities' float [1, h, w, num_classes],
    'filename' string [1].
    """
    num_records = count_records(resolve_record_paths(record_spec))
    num_images = min(num_records, config.num_eval_images or num_records)
    iterator = tf.data.make_initializable_iterator(eval_dataset(record_spec, num_images))
    batch = iterator.get_next()
    with tf.variable_scope(tf.get_variable_scope(), reuse=reuse):
        logits, _ = build_network(batch['inputs'], config.num_classes, False, config.model,
                                  config.weight_decay, fc_depth=config.fc_depth)
    return {'init': iterator.initializer, 'num_images': num_images, 'image': batch['image'],
            'label': batch['label'], 'filename': batch['filename'],
            'probabilities': tf.nn.softmax(logits)}


def prefix_for(step, index, num_images):
    """'val_STEP' for a single sample, 'val_STEP_K' when a validation draws several."""
    return 'val_%d' % step if num_images == 1 else 'val_%d_%d' % (step, index)


def run_validation(session, graph, config, step, draw_dir=None, log=print):
    """Scores every validation image (with and without dense CRF) and draws its five JPEGs.

    Returns the scores of utils.metrics.scores, plus 'crf' (the same scores after CRF, when on),
    'num_images' and 'jpegs' (paths written).
    """
    palette = make_palette(config.class_colors, config.num_classes)
    hist = np.zeros((config.num_classes, config.num_classes), np.int64)
    crf_hist = np.zeros_like(hist)
    jpegs = []
    session.run(graph['init'])
    fetches = {k: graph[k] for k in ('image', 'label', 'probabilities')}
    for index in range(graph['num_images']):
        out = session.run(fetches)
        image, label, probs = out['image'][0], out['label'][0], out['probabilities'][0]
        prediction = probs.argmax(axis=-1)
        hist += confusion_matrix(label, prediction, config.num_classes)
        crf_prediction = None
        if config.crf:
            crf_prediction = dense_crf(image, probs, config.crf_iterations)
            crf_hist += confusion_matrix(label, crf_prediction, config.num_classes)
        if draw_dir:
            jpegs += write_sample_jpegs(draw_dir, prefix_for(step, index, graph['num_images']),
                                        image, label, prediction, crf_prediction, palette,
                                        config.overlay_alpha)
    result = scores(hist)
    if config.crf:
        result['crf'] = scores(crf_hist)
    result['num_images'] = graph['num_images']
    result['jpegs'] = jpegs
    return result
