"""Validation and evaluation: streams full-size images through the model, scores them with and
without dense CRF, and draws the per-sample JPEGs.

Used inside training (`run_validation`, same session) and by evaluate.py (`evaluate`).
"""
import numpy as np
import tensorflow.compat.v1 as tf

from utils.crf import dense_crf
from utils.data import eval_dataset
from utils.inference import build_probabilities, session_config
from utils.metrics import confusion_matrix, scores
from utils.tfrecord import count_records, resolve_record_paths
from utils.visualization import colorize, make_palette, write_sample_jpegs


def build_eval_graph(config, record_spec, num_images=0, scales=(1.0,), flip=False,
                     failures=None):
    """Validation tensors for one image at a time, at its own size, in the default graph.

    Returns a dict: 'init' (starts a pass), 'num_images', and per-image tensors 'image' uint8
    [1, h, w, 3], 'label' int32 [1, h, w], 'probabilities' float [1, h, w, num_classes],
    'filename' string [1]. The network's variables are shared with any built before.
    """
    num_records = count_records(resolve_record_paths(record_spec))
    num_images = min(num_records, num_images or num_records)
    iterator = tf.data.make_initializable_iterator(eval_dataset(record_spec, num_images,
                                                                failures))
    batch = iterator.get_next()
    return {'init': iterator.initializer, 'num_images': num_images, 'image': batch['image'],
            'label': batch['label'], 'filename': batch['filename'],
            'probabilities': build_probabilities(batch['image'], config, scales, flip)}


def iterate_eval(session, graph):
    """Yields (image uint8 [h, w, 3], label [h, w], probabilities [h, w, n], filename str)."""
    session.run(graph['init'])
    fetches = {k: graph[k] for k in ('image', 'label', 'probabilities', 'filename')}
    for _ in range(graph['num_images']):
        try:
            out = session.run(fetches)
        except tf.errors.OutOfRangeError:  # records that did not decode were skipped
            return
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
    'num_images', 'jpegs' (paths written) and 'sample_pictures' (the first image's image,
    annotation and prediction as RGB arrays, for TensorBoard).
    """
    palette = make_palette(config.class_colors, config.num_classes)
    hist = np.zeros((config.num_classes, config.num_classes), np.int64)
    crf_hist = np.zeros_like(hist)
    jpegs, sample = [], {}
    total = graph['num_images']
    count = 0
    for index, (image, label, probs, _) in enumerate(iterate_eval(session, graph)):
        count += 1
        prediction, crf_prediction = crf_predictions(image, probs, config)
        if index == 0:
            sample = {'image': image, 'annotation': colorize(label, palette),
                      'prediction': colorize(prediction, palette)}
        if total >= 20 and (index + 1) % max(total // 5, 10) == 0:
            log('validation %d/%d images' % (index + 1, total))
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
    result['num_images'] = count
    result['jpegs'] = jpegs
    result['sample_pictures'] = sample
    return result


def image_scores(label, prediction, num_classes):
    """Pixel accuracy and mean IoU of one image."""
    result = scores(confusion_matrix(label, prediction, num_classes))
    return result['pixel_accuracy'], result['mean_iou']


def restore_model(session, checkpoint):
    """Restores the model variables of the default graph from `checkpoint`."""
    tf.train.Saver(tf.model_variables()).restore(session, checkpoint)


def evaluate(config, checkpoint, record_spec, num_images=0, scales=(1.0,), flip=False,
             worst=0, on_image=None):
    """Streams a checkpoint over a record set at the images' own sizes.

    Returns (scores dict with 'crf' when config.crf, per-image rows, drawn samples). Per-image
    rows are dicts: filename, pixel_accuracy, mean_iou (and crf_mean_iou). With `worst` > 0,
    the samples (image, label, prediction, crf_prediction, filename) of the `worst` images by
    mean IoU are returned for drawing; with worst < 0 every image is passed to `on_image` as it
    comes (that is, all are drawn) and none is kept.
    """
    n = config.num_classes
    hist = np.zeros((n, n), np.int64)
    crf_hist = np.zeros_like(hist)
    rows, kept = [], []
    with tf.Graph().as_default():
        graph = build_eval_graph(config, record_spec, num_images, scales, flip)
        with tf.Session(config=session_config()) as session:
            restore_model(session, checkpoint)
            for image, label, probs, filename in iterate_eval(session, graph):
                prediction, crf_prediction = crf_predictions(image, probs, config)
                hist += confusion_matrix(label, prediction, n)
                accuracy, miou = image_scores(label, prediction, n)
                row = {'filename': filename, 'pixel_accuracy': accuracy, 'mean_iou': miou}
                if crf_prediction is not None:
                    crf_hist += confusion_matrix(label, crf_prediction, n)
                    row['crf_mean_iou'] = image_scores(label, crf_prediction, n)[1]
                rows.append(row)
                sample = (image, label, prediction, crf_prediction, filename)
                if on_image:
                    on_image(sample)
                if worst > 0:
                    kept = sorted(kept + [(miou, len(rows), sample)], key=lambda k: k[:2])[:worst]
    result = dict(scores(hist), confusion=hist.tolist())
    if config.crf:
        result['crf'] = dict(scores(crf_hist), confusion=crf_hist.tolist())
    result['num_images'] = len(rows)
    return result, rows, [k[2] for k in kept]


def collect_probabilities(config, checkpoint, record_spec, num_images):
    """[(image, label, probabilities)] of the first `num_images` records (for CRF search)."""
    with tf.Graph().as_default():
        graph = build_eval_graph(config, record_spec, num_images)
        with tf.Session(config=session_config()) as session:
            restore_model(session, checkpoint)
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
