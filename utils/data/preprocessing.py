"""Image/label preprocessing in the graph: mean subtraction (nets/inputs.py), random scale,
padded crop, flip.

Image and label always go through the same geometric transform, so they stay aligned.
"""
import tensorflow
import tensorflow.compat.v1 as tf

from nets.inputs import subtract_mean
from utils.data.records import IGNORE_LABEL


def random_scale(image, label, min_scale, max_scale, seed=None):
    """Rescales image (bilinear) and label (nearest) by one random factor in [min, max]."""
    if min_scale == max_scale == 1.0:
        return image, label
    scale = tf.random_uniform([], min_scale, max_scale, seed=seed)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    new_size = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), 1)
    # TF2's resize: half-pixel centres for both (the v1 resize shifts bilinear results against
    # nearest ones by up to half a pixel, so label boundaries would drift off the image's).
    image = tensorflow.image.resize(image, new_size, method='bilinear')
    label = tensorflow.image.resize(label[..., None], new_size, method='nearest')[..., 0]
    return image, label


def random_crop_with_padding(image, label, crop_height, crop_width, seed=None):
    """Pads to at least the crop size (image with 0 = the mean, label with IGNORE_LABEL), then
    takes the same random crop of both. image float [h, w, 3], label int32 [h, w]."""
    shape = tf.shape(image)
    pad_h = tf.maximum(crop_height - shape[0], 0)
    pad_w = tf.maximum(crop_width - shape[1], 0)
    image = tf.pad(image, [[0, pad_h], [0, pad_w], [0, 0]])
    label = tf.pad(label - IGNORE_LABEL, [[0, pad_h], [0, pad_w]]) + IGNORE_LABEL
    stacked = tf.concat([image, tf.cast(label[..., None], tf.float32)], axis=2)
    cropped = tf.image.random_crop(stacked, [crop_height, crop_width, 4], seed=seed)
    return cropped[..., :3], tf.cast(cropped[..., 3], tf.int32)


def random_flip(image, label, seed=None):
    """Flips image and label left-right together with probability 1/2."""
    flip = tf.random_uniform([], seed=seed) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    label = tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label)
    return image, label


def photometric_jitter(image):
    """Random brightness, contrast, saturation and hue of a uint8 RGB image -> float 0..255."""
    image = tf.image.convert_image_dtype(image, tf.float32)  # 0..1
    image = tf.image.random_brightness(image, 0.125)
    image = tf.image.random_contrast(image, 0.75, 1.25)
    image = tf.image.random_saturation(image, 0.75, 1.25)
    image = tf.image.random_hue(image, 0.04)
    return tf.clip_by_value(image, 0.0, 1.0) * 255.0


def preprocess_for_train(image, label, crop_size, min_scale=1.0, max_scale=1.0, flip=True,
                         jitter=False, seed=None):
    """uint8 image [h, w, 3], uint8 label [h, w] -> float32 [ch, cw, 3] (mean-subtracted),
    int32 [ch, cw] with padding marked IGNORE_LABEL."""
    if jitter:
        image = photometric_jitter(image)
    image = subtract_mean(image)
    label = tf.cast(label, tf.int32)
    image, label = random_scale(image, label, min_scale, max_scale, seed)
    image, label = random_crop_with_padding(image, label, crop_size[0], crop_size[1], seed)
    if flip:
        image, label = random_flip(image, label, seed)
    return image, label
