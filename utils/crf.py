"""Dense CRF refinement (Kraehenbuehl & Koltun) of softmax outputs, through pydensecrf, on one
core (`dense_crf`) or on all of them over a stream of images (`CrfPool`)."""
import collections
import multiprocessing

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_softmax

from utils.runtime import available_cpus

# Typical settings (DeepLab / pydensecrf examples): smoothness and appearance kernels.
GAUSSIAN_SXY = 3
GAUSSIAN_COMPAT = 3
BILATERAL_SXY = 80
BILATERAL_SRGB = 13
BILATERAL_COMPAT = 10


def dense_crf(image, probabilities, crf_iterations=5, crf_bilateral_compat=BILATERAL_COMPAT,
              crf_bilateral_sxy=BILATERAL_SXY, crf_bilateral_srgb=BILATERAL_SRGB,
              crf_gaussian_compat=GAUSSIAN_COMPAT, crf_gaussian_sxy=GAUSSIAN_SXY):
    """Refines per-pixel class probabilities with a fully connected CRF.

    Args:
      image: uint8 [h, w, 3] RGB; probabilities: float [h, w, num_classes] (softmax).
      crf_*: the config keys of the same names (Config.crf_params()): crf_bilateral_* the
        appearance kernel's weight (w1) and widths (theta_alpha, theta_beta), crf_gaussian_*
        the smoothness kernel's weight (w2) and width (theta_gamma).
    Returns:
      int64 [h, w] class map (argmax of the CRF marginals).
    """
    height, width, num_classes = probabilities.shape
    crf = dcrf.DenseCRF2D(width, height, num_classes)
    probs = np.ascontiguousarray(probabilities.transpose(2, 0, 1), dtype=np.float32)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=crf_gaussian_sxy, compat=crf_gaussian_compat)
    crf.addPairwiseBilateral(sxy=crf_bilateral_sxy, srgb=crf_bilateral_srgb,
                             rgbim=np.ascontiguousarray(image, dtype=np.uint8),
                             compat=crf_bilateral_compat)
    marginals = np.array(crf.inference(crf_iterations)).reshape(num_classes, height, width)
    return marginals.argmax(axis=0)


class CrfPool:
    """dense_crf over a stream of images on `workers` processes (default: every core), results
    in input order.

    pydensecrf runs on one core and holds the GIL, so threads would not help: the work goes to
    forked worker processes, which run only numpy and pydensecrf. Start the pool (enter it)
    before a TensorFlow session starts its threads. With one worker it runs in this process.

        with CrfPool() as pool:
            for name, class_map in pool.map(((name, image, probs) for ...), params): ...
    """

    def __init__(self, workers=None):
        self.workers = workers or available_cpus()
        self._pool = None

    def __enter__(self):
        if self.workers > 1:
            self._pool = multiprocessing.get_context('fork').Pool(self.workers)
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def map(self, items, params):
        """(payload, image, probabilities) items -> (payload, dense_crf class map), in order;
        at most two images per worker are in flight, so memory stays bounded."""
        if self._pool is None:
            for payload, image, probabilities in items:
                yield payload, dense_crf(image, probabilities, **params)
            return
        pending = collections.deque()
        for payload, image, probabilities in items:
            pending.append((payload, self._pool.apply_async(dense_crf, (image, probabilities),
                                                             params)))
            if len(pending) >= 2 * self.workers:
                payload, result = pending.popleft()
                yield payload, result.get()
        while pending:
            payload, result = pending.popleft()
            yield payload, result.get()
