"""A small synthetic road-scene dataset, generated deterministically, for the demo and tests.

Scenes hold sky, buildings on the horizon, a road with lane marks, and cars; a thin void outline
around each car exercises the ignore label. Written in the CamVid layout (`train/`, `trainannot/`,
`val/`, `valannot/`, class-index PNG labels) so that it goes through the real converter.
"""
import os

import cv2
import numpy as np

from utils.data.records import IGNORE_LABEL

CLASS_NAMES = ('sky', 'building', 'road', 'car')
SKY, BUILDING, ROAD, CAR = range(len(CLASS_NAMES))
NOISE_SIGMA = 6.0


def _jitter(rng, color, amount=20):
    return np.clip(np.asarray(color) + rng.randint(-amount, amount + 1, 3), 0, 255)


def make_scene(rng, height, width):
    """One scene: (uint8 RGB [h, w, 3], uint8 label [h, w])."""
    image = np.zeros((height, width, 3), np.float32)
    label = np.full((height, width), SKY, np.uint8)
    horizon = int(height * rng.uniform(0.35, 0.55))
    # Sky: vertical gradient from deep to pale blue.
    top, bottom = _jitter(rng, (70, 120, 210)), _jitter(rng, (170, 200, 235))
    t = np.linspace(0, 1, horizon)[:, None, None]
    image[:horizon] = (1 - t) * top + t * bottom
    # Road below the horizon, with dashed lane marks.
    image[horizon:] = _jitter(rng, (95, 95, 100), 12)
    label[horizon:] = ROAD
    lane_x = width // 2 + rng.randint(-width // 8, width // 8 + 1)
    for y in range(horizon + 4, height, 12):
        image[y:y + 5, lane_x - 1:lane_x + 2] = (235, 235, 225)
    # Buildings standing on the horizon, with darker windows.
    for _ in range(rng.randint(1, 4)):
        w = rng.randint(width // 8, width // 3)
        x0 = rng.randint(0, width - w)
        y0 = rng.randint(max(horizon // 5, 1), max(horizon - 8, horizon // 5 + 2))
        color = _jitter(rng, (150, 110, 80), 35)
        image[y0:horizon, x0:x0 + w] = color
        image[y0 + 3:horizon - 2:6, x0 + 2:x0 + w - 2:5] = color * 0.5
        label[y0:horizon, x0:x0 + w] = BUILDING
    # Cars on the road: bright bodies, dark wheels, void outline.
    for _ in range(rng.randint(1, 4)):
        h = rng.randint(max((height - horizon) // 5, 4), max((height - horizon) // 2, 6))
        w = int(h * rng.uniform(1.4, 2.2))
        y0 = rng.randint(horizon, max(height - h, horizon + 1))
        x0 = rng.randint(0, max(width - w, 1))
        body = _jitter(rng, [(200, 30, 30), (30, 60, 200), (230, 200, 40)][rng.randint(3)], 25)
        cv2.rectangle(label, (x0 - 1, y0 - 1), (x0 + w, y0 + h), IGNORE_LABEL, 1)
        image[y0:y0 + h, x0:x0 + w] = body
        image[y0 + h - 3:y0 + h, x0 + 1:x0 + w - 1] = (25, 25, 25)
        label[y0:y0 + h, x0:x0 + w] = CAR
    image += rng.normal(0, NOISE_SIGMA, image.shape)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), label


def write_demo_dataset(output_dir, num_train=48, num_val=8, height=96, width=128, seed=0):
    """Writes the demo dataset in the CamVid layout under `output_dir`; returns it."""
    rng = np.random.RandomState(seed)
    for split, count in (('train', num_train), ('val', num_val)):
        os.makedirs(os.path.join(output_dir, split), exist_ok=True)
        os.makedirs(os.path.join(output_dir, split + 'annot'), exist_ok=True)
        for index in range(count):
            image, label = make_scene(rng, height, width)
            name = '%s_%04d.png' % (split, index)
            cv2.imwrite(os.path.join(output_dir, split, name), image[..., ::-1])
            cv2.imwrite(os.path.join(output_dir, split + 'annot', name), label)
    return output_dir
