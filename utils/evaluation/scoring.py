"""Validation and evaluation: streams full-size images through the model, scores them with and
without dense CRF, and draws the per-sample JPEGs.

Used inside training (`run_validation`, same session) and by evaluate.py (`evaluate`).
"""
import numpy as np
import tensorflow.compat.v1 as tf

from utils.data.pipeline import NO_LABELLED_PIXEL, check_dataset, damage_report, eval_dataset
from utils.data.pixels import MAX_IMAGE_PIXELS
from utils.data.records import (DecodeFailures, count_records, data_error_from,
                                resolve_record_paths)
from utils.errors import DataError
from utils.evaluation.binary import BinaryCurve
from utils.evaluation.boundary import BoundaryScore
from utils.evaluation.calibration import Calibration
from utils.evaluation.metrics import confusion_matrix, scores
from utils.evaluation.reports import class_names_of
from utils.crf import CrfPool
from utils.inference.predictor import build_probabilities, restore_model
from utils.rundir import validation_prefix
from utils.runtime import session_config
from utils.visualization import colorize, make_palette, write_sample_jpegs


def build_eval_graph(config, record_spec, num_images=0, scales=(1.0,), flip=False,
                     failures=None, num_records=None, max_pixels=MAX_IMAGE_PIXELS):
    """Validation tensors for one image at a time, at its own size, in the default graph.

    Returns a dict: 'init' (starts a pass), 'num_images', and per-image tensors 'image' uint8
    [1, h, w, 3], 'label' int32 [1, h, w], 'probabilities' float [1, h, w, num_classes],
    'filename' string [1]. The network's variables are shared with any built before.
    `num_records`: the readable records of `record_spec` when already counted
    (utils.data.pipeline.check_dataset); records that do not decode or exceed `max_pixels`
    are skipped and named in `failures`.
    """
    if num_records is None:
        num_records = count_records(resolve_record_paths(record_spec))
    num_images = min(num_records, num_images or num_records)
    iterator = tf.data.make_initializable_iterator(eval_dataset(
        record_spec, num_images, failures, config.num_classes, max_pixels))
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
        except tf.errors.OpError as e:
            raise data_error_from(e) or e from None
        yield (out['image'][0], out['label'][0], out['probabilities'][0],
               out['filename'][0].decode('utf-8', 'replace'))


class Scorer:
    """Scores over a stream of images: confusion matrices without and (when on) with dense CRF;
    with a `positive_class` the two-class curve (utils.evaluation.binary) of its probability;
    with a `boundary_tolerance` the boundary F-score (utils.evaluation.boundary) of both
    predictions; with `calibration` the ECE of the probabilities
    (utils.evaluation.calibration); with `suspects` (utils.evaluation.suspects.SuspectFinder)
    the annotations that look wrong."""

    def __init__(self, num_classes, crf, positive_class=None, boundary_tolerance=None,
                 calibration=False, suspects=None):
        self.num_classes = num_classes
        self.hist = np.zeros((num_classes, num_classes), np.int64)
        self.crf_hist = np.zeros_like(self.hist) if crf else None
        self.binary = (None if positive_class is None
                       else BinaryCurve(positive_class, num_classes))
        self.boundary = self.crf_boundary = None
        if boundary_tolerance is not None:
            self.boundary = BoundaryScore(num_classes, boundary_tolerance)
            self.crf_boundary = BoundaryScore(num_classes, boundary_tolerance) if crf else None
        self.calibration = Calibration() if calibration else None
        self.suspects = suspects
        self.num_images = 0

    def observe(self, samples):
        """Passes (image, label, probabilities, filename) samples on, giving each image's
        probabilities to the scores that need them (two-class curve, calibration, suspects)."""
        for record, sample in enumerate(samples):
            image, label, probabilities, filename = sample
            if self.binary is not None:
                self.binary.add(label, probabilities[..., self.binary.positive_class])
            if self.calibration is not None:
                self.calibration.add(label, probabilities)
            if self.suspects is not None:
                self.suspects.add(record, filename, image, label, probabilities)
            yield sample

    def add(self, label, prediction, crf_prediction=None):
        """Counts one image; returns its own (confusion, CRF confusion or None)."""
        image_hist = confusion_matrix(label, prediction, self.num_classes)
        self.hist += image_hist
        crf_image_hist = None
        if self.crf_hist is not None:
            crf_image_hist = confusion_matrix(label, crf_prediction, self.num_classes)
            self.crf_hist += crf_image_hist
        if self.boundary is not None:
            self.boundary.add(label, prediction)
            if self.crf_boundary is not None:
                self.crf_boundary.add(label, crf_prediction)
        self.num_images += 1
        return image_hist, crf_image_hist

    def result(self, with_confusion=False):
        """utils.evaluation.metrics.scores, 'crf' (the same after CRF, when on), 'num_images',
        and when computed 'binary', 'boundary' (also under 'crf') and 'calibration'."""
        def summary(hist, boundary):
            result = dict(scores(hist), confusion=hist.tolist()) if with_confusion else scores(hist)
            if boundary is not None:
                result['boundary'] = boundary.result()
            return result
        result = summary(self.hist, self.boundary)
        if self.crf_hist is not None:
            result['crf'] = summary(self.crf_hist, self.crf_boundary)
        if self.binary is not None:
            result['binary'] = self.binary.result()
        if self.calibration is not None:
            result['calibration'] = self.calibration.result()
        result['num_images'] = self.num_images
        return result


def with_crf(samples, config, crf_pool=None):
    """(image, label, probabilities, filename) samples -> (image, label, prediction,
    crf_prediction or None, filename), the CRF on `crf_pool` when given (all cores)."""
    if not config.crf:
        for image, label, probabilities, filename in samples:
            yield image, label, probabilities.argmax(-1), None, filename
        return
    pool = crf_pool or CrfPool(workers=1)
    items = (((image, label, probabilities.argmax(-1), filename), image, probabilities)
             for image, label, probabilities, filename in samples)
    for (image, label, prediction, filename), crf_prediction in pool.map(
            items, config.crf_params()):
        yield image, label, prediction, crf_prediction, filename


def scored_images(session, graph, config, scorer, crf_pool=None):
    """Predicts (with CRF when on) and scores every image of an eval graph's pass.

    Yields (image, label, prediction, crf_prediction, filename, confusion, crf_confusion).
    """
    samples = scorer.observe(iterate_eval(session, graph))
    for image, label, prediction, crf_prediction, filename in with_crf(samples, config,
                                                                       crf_pool):
        image_hist, crf_image_hist = scorer.add(label, prediction, crf_prediction)
        yield image, label, prediction, crf_prediction, filename, image_hist, crf_image_hist


def run_validation(session, graph, config, step, draw_dir=None, log=print, crf_pool=None):
    """Scores every validation image (with and without dense CRF) and draws its five JPEGs.

    Returns the scores of utils.evaluation.metrics.scores, plus 'crf' (the same scores after
    CRF, when on), 'num_images', 'jpegs' (paths written) and 'sample_pictures' (the first
    image's image, annotation and prediction as RGB arrays, for TensorBoard).
    """
    palette = make_palette(config.class_colors, config.num_classes)
    names = class_names_of(config)
    scorer = Scorer(config.num_classes, config.crf)
    jpegs, sample = [], {}
    total = graph['num_images']
    if draw_dir:
        log('Validating on %s image(s), writing the JPEGs of each to %s'
            % (total or 'all', draw_dir))
    for index, (image, label, prediction, crf_prediction, *_) in enumerate(
            scored_images(session, graph, config, scorer, crf_pool)):
        if index == 0:
            sample = {'image': image, 'annotation': colorize(label, palette),
                      'prediction': colorize(prediction, palette)}
        if total >= 20 and (index + 1) % max(total // 5, 10) == 0:
            log('validation %d/%d images' % (index + 1, total))
        if draw_dir:
            jpegs += write_sample_jpegs(draw_dir, validation_prefix(step, index, total), image,
                                        label, prediction, crf_prediction, palette,
                                        config.overlay_alpha, names)
    return dict(scorer.result(), jpegs=jpegs, sample_pictures=sample)


def evaluate(config, checkpoint, record_spec, num_images=0, scales=(1.0,), flip=False,
             worst=0, on_image=None, crf_pool=None, max_pixels=MAX_IMAGE_PIXELS, log=print,
             best=0, positive_class=None, boundary_tolerance=None, calibration=False,
             suspects=None, progress=None):
    """Streams a checkpoint over a record set at the images' own sizes, after checking every
    record file as training does (utils.data.pipeline.check_dataset).

    Returns (scores dict with 'confusion', 'crf' when config.crf, 'binary' with a
    `positive_class` (utils.evaluation.binary), 'boundary' with a `boundary_tolerance`,
    'calibration' when asked (see Scorer; `suspects` is filled as the images come), and
    'data' (see data_summary), per-image rows,
    kept samples {'worst': [(record, sample)...], 'best': [...]}). Per-image rows are dicts:
    record (the image's place in the evaluation, 0-based: file names can repeat), filename,
    pixel_accuracy, mean_iou (and crf_mean_iou). The samples (image, label, prediction,
    crf_prediction, filename) of the `worst` and the `best` images by mean IoU are kept for
    drawing, worst or best first; every image is also passed to `on_image(record, sample)` as
    it comes; `progress(num_images)` (e.g. a tqdm bar's maker) gives a callable called once
    per image scored.
    Raises DataError when no image could be scored.
    """
    log('Checking the record file(s) of %s (every record read through once)' % record_spec)
    files = check_dataset(record_spec, config.num_classes, log)
    failures = DecodeFailures()
    scorer = Scorer(config.num_classes, config.crf, positive_class, boundary_tolerance,
                    calibration, suspects)
    rows, kept = [], {'worst': [], 'best': []}
    with tf.Graph().as_default():
        graph = build_eval_graph(config, record_spec, num_images, scales, flip, failures,
                                 sum(f.count for f in files), max_pixels)
        with tf.Session(config=session_config()) as session:
            log('Restoring %s; the first image also waits for the graph to be optimised'
                % checkpoint)
            restore_model(session, checkpoint, config)
            step = progress(graph['num_images']) if progress else (lambda: None)
            for (image, label, prediction, crf_prediction, filename, image_hist,
                 crf_image_hist) in scored_images(session, graph, config, scorer, crf_pool):
                step()
                image_result = scores(image_hist)
                miou = image_result['mean_iou']
                row = {'record': len(rows), 'filename': filename,
                       'pixel_accuracy': image_result['pixel_accuracy'], 'mean_iou': miou}
                if crf_image_hist is not None:
                    row['crf_mean_iou'] = scores(crf_image_hist)['mean_iou']
                rows.append(row)
                sample = (image, label, prediction, crf_prediction, filename)
                if on_image:
                    on_image(row['record'], sample)
                headlined = row.get('crf_mean_iou', miou)  # the report's ranking setting
                keep_extremes(kept, (headlined, row['record'], sample), worst, best)
    result = dict(scorer.result(with_confusion=True), data=data_summary(files, failures))
    if not result['num_images']:
        raise DataError('no image of %s could be scored: %s; convert the dataset again'
                        % (record_spec, '; '.join(failures.summary()[:3]) or 'no record'))
    if not np.asarray(result['confusion']).sum():
        raise DataError(NO_LABELLED_PIXEL % ('%s (%d images)' % (record_spec,
                                                                 result['num_images'])))
    return result, rows, {kind: [(k[1], k[2]) for k in items] for kind, items in kept.items()}


def spread_out(candidates, count, min_gap, taken=()):
    """Up to `count` of `candidates` ((record, sample), best first) whose records lie at least
    `min_gap` apart and are not in `taken`: neighbouring records are often neighbouring frames
    of one video sequence, near-identical pictures. Fills up with the closest ones left when
    too few lie apart."""
    chosen = []
    for gap in (min_gap, 0):
        for record, sample in candidates:
            if len(chosen) == count:
                return chosen
            if record in taken or any(record == r or abs(record - r) < gap for r, _ in chosen):
                continue
            chosen.append((record, sample))
    return chosen


def keep_extremes(kept, item, worst, best):
    """Keeps in kept['worst'] / kept['best'] the `worst` lowest and `best` highest (mIoU,
    order, sample) items seen so far (an image without a labelled pixel, mIoU NaN, counts as
    neither)."""
    if item[0] != item[0]:
        return
    if worst > 0:
        kept['worst'] = sorted(kept['worst'] + [item], key=lambda k: k[:2])[:worst]
    if best > 0:
        kept['best'] = sorted(kept['best'] + [item], key=lambda k: (-k[0], k[1]))[:best]


def data_warnings(data, max_names=5):
    """Sentences that tell the user the score is not of the whole record set (damaged files,
    records skipped), from data_summary's dict; none when it is."""
    lines = ['%s is damaged: only its first %d record(s) are readable, the rest was not scored '
             '(%s)' % (d['path'], d['readable_records'], d['damage'])
             for d in data['damaged_files']]
    if data['skipped_records']:
        lines.append('%d record(s) skipped: %s' % (
            len(data['skipped_records']), '; '.join(data['skipped_records'][:max_names])))
    return lines


def data_summary(files, failures):
    """What an evaluation read: {'record_files', 'readable_records', 'damaged_files'
    (utils.data.pipeline.damage_report), 'skipped_records' (['NAME: why', ...])}."""
    return {'record_files': [f.path for f in files],
            'readable_records': sum(f.count for f in files),
            'damaged_files': damage_report(files), 'skipped_records': failures.summary()}
