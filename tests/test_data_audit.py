"""Know your data, the library parts: boundary F-score, calibration, suspect regions, soft
outputs (utils.evaluation.boundary, .calibration, .suspects, utils.inference.soft_outputs)."""
import os

import cv2
import numpy as np
import pytest

from utils.errors import ConfigError
from utils.evaluation.boundary import (REFERENCE_DIAGONAL, BoundaryScore, image_boundary_f,
                                       scaled_tolerance)
from utils.evaluation.calibration import Calibration, write_reliability_png
from utils.evaluation.suspects import SuspectFinder, suspect_regions
from utils.inference.soft_outputs import (PROBABILITIES_SUFFIX, UNCERTAINTY_SUFFIX,
                                          ProbabilityWriter, check_disk_for_probabilities,
                                          normalised_entropy, probability_file_bytes)


def reference_boundary_f(label, prediction, c, tolerance):
    """Boundary F of class c by brute force: boundary pixels by explicit 4-neighbour loops
    (the edge replicated), distances by comparing every pair of boundary pixels."""
    def edge(mask):
        h, w = mask.shape
        points = []
        for y in range(h):
            for x in range(w):
                if mask[y, x] and any(not mask[min(max(y + dy, 0), h - 1),
                                           min(max(x + dx, 0), w - 1)]
                                      for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1))):
                    points.append((y, x))
        return np.array(points, np.float64).reshape(-1, 2)
    truth = edge(label == c)
    labelled = (label >= 0) & (label < 255)
    predicted = np.array([p for p in edge(prediction == c) if labelled[int(p[0]), int(p[1])]],
                         np.float64).reshape(-1, 2)
    if not len(truth) and not len(predicted):
        return np.nan
    if not len(truth) or not len(predicted):
        return 0.0
    d = np.sqrt(((predicted[:, None] - truth[None]) ** 2).sum(-1))
    precision = (d.min(1) <= tolerance).mean()
    recall = (d.min(0) <= tolerance).mean()
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def square(shape, top, left, size, value=1, background=0):
    out = np.full(shape, background, np.int64)
    out[top:top + size, left:left + size] = value
    return out


def test_boundary_f_hand_computed_cases():
    label = square((40, 40), 10, 10, 20)
    f = image_boundary_f(label, label, 2, 1.0)
    assert f[0] == 1.0 and f[1] == 1.0  # a perfect prediction
    # Shifted right by 2: the vertical edges are 2 apart, the horizontal ones overlap.
    shifted = square((40, 40), 10, 12, 20)
    assert image_boundary_f(label, shifted, 2, 2.0)[1] == 1.0
    within_one = image_boundary_f(label, shifted, 2, 1.0)[1]
    # By hand, within 1 pixel: each 20x20 square has 76 boundary pixels. Of the predicted one
    # (x 12..31), its top and bottom rows lie on the annotated rows for x 12..29 (36 pixels),
    # at x 30 one pixel from the annotated corner (2 more), at x 31 two away; of its columns,
    # x 12 is two from the annotated column x 10 but its ends (y 11, y 28) are one from the
    # annotated rows (2 more), x 31 none. Precision 40/76, and recall the same by symmetry.
    assert within_one == pytest.approx(40 / 76)
    assert within_one == pytest.approx(reference_boundary_f(label, shifted, 1, 1.0))
    # A class predicted where it is not annotated (and not at all annotated): 0.
    nothing = np.zeros((40, 40), np.int64)
    assert image_boundary_f(nothing, label, 2, 2.0)[1] == 0.0
    # Absent on both sides: does not count.
    assert np.isnan(image_boundary_f(nothing, nothing, 2, 2.0)[1])


def test_boundary_f_matches_a_brute_force_implementation():
    rng = np.random.default_rng(0)
    for trial in range(4):
        # Blobs of three classes (smoothed noise), some void, and a perturbed prediction.
        noise = cv2.GaussianBlur(rng.random((36, 48)).astype(np.float32), (0, 0), 3)
        label = np.digitize(noise, np.quantile(noise, [0.33, 0.66])).astype(np.int64)
        prediction = label.copy()
        prediction[rng.random(label.shape) < 0.05] = rng.integers(0, 3)
        prediction = np.roll(prediction, trial, axis=1)
        label[:3, :5] = 255  # void
        for tolerance in (1.0, 2.0, 3.5):
            ours = image_boundary_f(label, prediction, 3, tolerance)
            for c in range(3):
                assert ours[c] == pytest.approx(
                    reference_boundary_f(label, prediction, c, tolerance), abs=1e-12)


def test_boundary_score_averages_over_images_and_scales_its_tolerance():
    assert scaled_tolerance(2, (360, 480)) == pytest.approx(2.0)
    assert scaled_tolerance(2, (720, 960)) == pytest.approx(4.0)
    assert REFERENCE_DIAGONAL == 600
    score = BoundaryScore(2, tolerance=2)
    label = square((36, 48), 5, 5, 20)
    score.add(label, label)  # class 1: F 1
    score.add(label, np.zeros_like(label))  # class 1 never predicted: F 0
    result = score.result()
    assert result['per_class_boundary_f'][1] == pytest.approx(0.5)
    assert result['boundary_tolerance'] == 2


def test_expected_calibration_error_on_known_cases(tmp_path):
    # Confidence 0.8 everywhere, right on 80% of the pixels: perfectly calibrated.
    label = np.zeros((10, 10), np.int64)
    label.ravel()[:20] = 1  # the top class (0) is wrong on 20 of 100 pixels
    probabilities = np.zeros((10, 10, 2), np.float32)
    probabilities[..., 0], probabilities[..., 1] = 0.8, 0.2
    calibration = Calibration()
    calibration.add(label, probabilities)
    assert calibration.result()['ece'] == pytest.approx(0.0, abs=1e-6)
    # Confidence 0.6 and always right: ECE 0.4; void pixels left out.
    right = np.zeros((10, 10), np.int64)
    right[0] = 255
    probabilities[..., 0], probabilities[..., 1] = 0.6, 0.4
    calibration = Calibration()
    calibration.add(right, probabilities)
    result = calibration.result()
    assert result['ece'] == pytest.approx(0.4, abs=1e-6)
    assert result['num_pixels'] == 90
    # Two bins, half the pixels each: 0.95 always right (gap 0.05), 0.55 right half the time
    # (gap 0.05): ECE 0.05.
    label = np.zeros((2, 10), np.int64)
    label[1, :5] = 1
    probabilities = np.zeros((2, 10, 2), np.float32)
    probabilities[0] = (0.95, 0.05)
    probabilities[1] = (0.55, 0.45)
    calibration = Calibration()
    calibration.add(label, probabilities)
    assert calibration.result()['ece'] == pytest.approx(0.05, abs=1e-6)
    name = write_reliability_png(str(tmp_path), calibration.result())
    assert cv2.imread(str(tmp_path / name)) is not None


def planted_case():
    """A 60x80 scene of class 0 with a 20x20 square annotated 1; the model confidently says 2
    in the square and is sure of 0 elsewhere, except a 3x3 speck (below the minimum area)."""
    label = square((60, 80), 10, 30, 20)
    probabilities = np.full((60, 80, 3), 0.025, np.float32)
    probabilities[..., 0] = 0.95
    probabilities[10:30, 30:50] = (0.02, 0.03, 0.95)
    probabilities[50:53, 5:8] = (0.02, 0.93, 0.05)  # a small confident disagreement
    return label, probabilities


def test_suspect_regions_find_a_confident_disagreement():
    label, probabilities = planted_case()
    regions = suspect_regions(label, probabilities, 0.9, 20)
    assert len(regions) == 1
    area, confidence, annotated, predicted, box, share = regions[0]
    assert (area, annotated, predicted, box, share) == (400, 1, 2, (30, 10, 20, 20), 1.0)
    assert confidence == pytest.approx(0.95)
    assert len(suspect_regions(label, probabilities, 0.9, 5)) == 2  # the speck too
    assert suspect_regions(label, probabilities, 0.96, 5) == []  # nothing that confident
    void = label.copy()
    void[10:30, 30:50] = 255
    assert len(suspect_regions(void, probabilities, 0.9, 20)) == 0  # void is no annotation


def test_the_threshold_is_on_a_regions_mean_and_the_share_of_the_predicted_region():
    label, probabilities = planted_case()
    probabilities[10:30, 40:50] = (0.2, 0.2, 0.6)  # half the square far less confident
    regions = suspect_regions(label, probabilities, 0.7, 20)
    assert [(r.area, r.box) for r in regions] == [(400, (30, 10, 20, 20))]  # one, not cut
    assert regions[0].confidence == pytest.approx(0.775)
    assert suspect_regions(label, probabilities, 0.8, 20) == []
    # The model's class-2 region runs on over 400 pixels annotated 2: the square is half of it.
    label[10:30, 50:70] = 2
    probabilities[10:30, 50:70] = (0.02, 0.03, 0.95)
    regions = suspect_regions(label, probabilities, 0.7, 20)
    assert [(r.area, r.share) for r in regions] == [(400, 0.5)]


def test_suspect_finder_ranks_by_area_times_confidence_and_keeps_few_crops():
    label, probabilities = planted_case()
    image = np.zeros((60, 80, 3), np.uint8)
    finder = SuspectFinder(3, np.eye(3, dtype=np.uint8) * 255, ['a', 'b', 'c'], 0.9, 5,
                           num_shown=1)
    finder.add(0, 'x.png', image, label, probabilities)
    big = label.copy()
    big[:, :] = 0
    finder.add(1, 'y.png', image, big, probabilities)  # the square annotated 0: same pair 0->2
    rows = finder.ranked_rows()
    assert [r['rank'] for r in rows] == [1, 2, 3, 4]
    assert rows[0]['score'] >= rows[1]['score'] >= rows[3]['score']
    assert rows[-1]['area'] == 9
    top = finder.top()
    assert len(top) == 1 and top[0][0]['rank'] == 1
    assert all(crop.ndim == 3 for crop in top[0][1])


def test_normalised_entropy_and_the_probability_file(tmp_path):
    sure = np.array([1.0, 0.0, 0.0, 0.0])
    even = np.full(4, 0.25)
    assert normalised_entropy(sure) == pytest.approx(0.0)
    assert normalised_entropy(even) == pytest.approx(1.0)
    assert 0 < normalised_entropy([0.7, 0.1, 0.1, 0.1]) < 1
    probabilities = np.random.default_rng(1).dirichlet(np.ones(5), (30, 40)).astype(np.float32)
    with ProbabilityWriter(str(tmp_path), 'x', (30, 40), 5) as writer:
        writer.write_rows(0, probabilities[:17])
        writer.write_rows(17, probabilities[17:])
    back = np.load(tmp_path / ('x' + PROBABILITIES_SUFFIX)).astype(np.float32)
    assert back.shape == (30, 40, 5) and back.dtype == np.float32
    np.testing.assert_allclose(back, probabilities, atol=1e-3)
    picture = cv2.imread(str(tmp_path / ('x' + UNCERTAINTY_SUFFIX)))
    assert picture.shape[1] == 40 and picture.shape[0] > 30  # the scale bar below
    assert probability_file_bytes((360, 480), 11) == 360 * 480 * 11 * 2
    # A failure inside the block leaves neither file nor temporary.
    with pytest.raises(RuntimeError):
        with ProbabilityWriter(str(tmp_path), 'y', (30, 40), 5) as writer:
            raise RuntimeError('stop')
    assert sorted(os.listdir(tmp_path)) == ['x' + PROBABILITIES_SUFFIX, 'x' + UNCERTAINTY_SUFFIX]


def test_probabilities_that_would_not_fit_the_disk_are_refused(tmp_path):
    assert check_disk_for_probabilities([(36, 48)], 11, str(tmp_path / 'new')) > 0
    with pytest.raises(ConfigError, match='--save_probabilities.*GB'):
        check_disk_for_probabilities([(10 ** 6, 10 ** 6)], 11, str(tmp_path))
