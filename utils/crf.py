"""Dense CRF refinement (Kraehenbuehl & Koltun) of softmax outputs, through pydensecrf."""
import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_softmax

# Typical settings (DeepLab / pydensecrf examples): smoothness and appearance kernels.
GAUSSIAN_SXY = 3
GAUSSIAN_COMPAT = 3
BILATERAL_SXY = 80
BILATERAL_SRGB = 13
BILATERAL_COMPAT = 10


def dense_crf(image, probabilities, iterations=5, bilateral_compat=BILATERAL_COMPAT,
              bilateral_sxy=BILATERAL_SXY, bilateral_srgb=BILATERAL_SRGB,
              gaussian_compat=GAUSSIAN_COMPAT, gaussian_sxy=GAUSSIAN_SXY):
    """Refines per-pixel class probabilities with a fully connected CRF.

    Args:
      image: uint8 [h, w, 3] RGB; probabilities: float [h, w, num_classes] (softmax).
      bilateral_*: appearance kernel weight (w1) and widths (theta_alpha, theta_beta);
      gaussian_*: smoothness kernel weight (w2) and width (theta_gamma).
    Returns:
      int64 [h, w] class map (argmax of the CRF marginals).
    """
    height, width, num_classes = probabilities.shape
    crf = dcrf.DenseCRF2D(width, height, num_classes)
    probs = np.ascontiguousarray(probabilities.transpose(2, 0, 1), dtype=np.float32)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb,
                             rgbim=np.ascontiguousarray(image, dtype=np.uint8),
                             compat=bilateral_compat)
    marginals = np.array(crf.inference(iterations)).reshape(num_classes, height, width)
    return marginals.argmax(axis=0)
