"""Validation and evaluation: streams full-size images through the model, scores them with and
without dense CRF, and draws the per-sample JPEGs.

Used inside training (`run_validation`, same session) and by evaluate.py (`evaluate`).
"""
import numpy as np
import tensorflow.compat.v1 as tf

from utils.crf import dense_crf
from utils.data import eval_dataset
from utils.inference import build_probabilities
from utils.metrics import confusion_matrix, scores
from utils.tfrecord import count_records, resolve_record_paths
from utils.visualization import make_palette, write_sample_jpegs


def build_eval_graph(config, record_spec, num_images=0, scales=(1.0,), flip=False):
    """Validation tensors for one image at a time, at its own size, in the default graph.

    Returns a dict: 'init' (starts a pass), 'num_images', and per-image tensors 'image' uint8
    [1, h, w, 3], 'label' int32 [1, h, w], 'probabilities' float [1, h, w, num_classes],
    'filename' string [1]. The network's variables are shared with any built before.
    """
    num_records = count_records(resolve_record_paths(record_spec))
    num_images = min(num_records, num_images or num_records)
    iterator = tf.data.make_initializable_iterator(eval_dataset(record_spec, num_images))
    batch = iterator.get_next()
    return {'init': iterator.initializer, 'num_images': num_images, 'image': batch['image'],
            'label': batch['label'], 'filename': batch['filename'],
            'probabilities': build_probabilities(batch['image'], config, scales, flip)}


def iterate_eval(session, graph):
    """Yields (image uint8 [h, w, 3], label [h, w], probabilities [h, w, n], filename str)."""
    session.run(graph['init'])
    fetches = {k: graph[k] for k in ('image', 'label', 'probabilities', 'filename')}
    for _ in range(graph['num_images']):
        out = session.run(fetches)
        yield (out['image'][0], out['label'][0], out['probabilities'][0],
               out['filename'][0].decode('utf-8', 'replace'))


def prefix_for(step, index, num_images):
    """'val_STEP' for a single sample, 'val_STEP_K' when a validation draws several."""
    return 'val_%d' % step if num_images == 1 else 'val_%d_%d' % (step, index)


def crf_predictions(image, probabilities, config):
    """(argmax prediction, CRF prediction or None when the config turns CRF off)."""
    prediction = probabilities.argmax(axis=-1)
    if not config.crf:
        return prediction, None
    return prediction, dense_crf(image, probabilities, **config.crf_params())


def run_validation(session, graph, config, step, draw_dir=None, log=print):
    """Scores every validation image (with and without dense CRF) and draws its five JPEGs.

    Returns the scores of utils.metrics.scores, plus 'crf' (the same scores after CRF, when on),
    'num_images' and 'jpegs' (paths written).
    """
    palette = make_palette(config.class_colors, config.num_classes)
    hist = np.zeros((config.num_classes, config.num_classes), np.int64)
    crf_hist = np.zeros_like(hist)
    jpegs = []
    for index, (image, label, probs, _) in enumerate(iterate_eval(session, graph)):
        prediction, crf_prediction = crf_predictions(image, probs, config)
        hist += confusion_matrix(label, prediction, config.num_classes)
        if crf_prediction is not None:
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
