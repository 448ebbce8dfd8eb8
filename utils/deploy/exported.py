"""A deployed model behind the Predictor interface, so that predict.py checks a deployment end
to end on new images and videos."""
import os

import cv2
import numpy as np

from utils.config import resolve_config
from utils.deploy.export import open_exported
from utils.deploy.serving import CLASSES_KEY, PROBABILITIES_KEY
from utils.errors import ConfigError, DataError
from utils.inference.image_files import resized_channels
from utils.inference.predictor import Predictor
from utils.rundir import CONFIG_FILENAME


def gives_classes_only(path, model_format):
    """Whether the model at `path` opens with its class-map output alone."""
    try:
        open_exported(path, model_format, outputs=(CLASSES_KEY,)).close()
    except DataError:
        return False
    return True


class ExportedPredictor:
    """An exported model (SavedModel folder, frozen .pb, .onnx or .tflite) behind the Predictor
    interface (`config`, `predict`, `predict_batch`), so that predict.py checks a deployment
    end to end. The config is the config.yaml saved in the export folder."""

    def __init__(self, path):
        by_extension = {'.pb': 'frozen_graph', '.onnx': 'onnx', '.tflite': 'tflite'}
        if os.path.isdir(path):
            export_dir, model_format = path, 'saved_model'
        elif os.path.splitext(path)[1] in by_extension and os.path.isfile(path):
            export_dir = os.path.dirname(path) or '.'
            model_format = by_extension[os.path.splitext(path)[1]]
        else:
            raise ConfigError('--exported %s is neither a SavedModel folder nor a frozen .pb '
                              'graph, .onnx or .tflite model' % path)
        config_path = os.path.join(export_dir, CONFIG_FILENAME)
        if not os.path.isfile(config_path):
            raise ConfigError('%s has no %s beside it; export it with export_model.py'
                              % (path, CONFIG_FILENAME))
        self.config = resolve_config(config_path)
        # The file given, whatever its name (model_int8.tflite, a renamed copy).
        try:
            self.model = open_exported(path, model_format, outputs=(PROBABILITIES_KEY,))
        except DataError:
            if gives_classes_only(path, model_format):
                raise ConfigError(
                    '%s gives class maps only (no %r output), and the probabilities are what '
                    'this needs (uncertainty, CRF, resizing back): export the run again with '
                    'export_model.py, whose models give both, or give its --run_dir'
                    % (path, PROBABILITIES_KEY)) from None
            raise

    def predict(self, image):
        """uint8 RGB [h, w, 3] -> float32 probabilities [h, w, num_classes]."""
        return self.predict_batch(np.asarray(image)[None])[0]

    def predict_batch(self, images):
        """A model of one input size (TFLite) gets the images resized to it, and its
        probabilities are resized back."""
        size = getattr(self.model, 'input_shape', None)
        height, width = images.shape[1:3]
        if size is None or size == (height, width):
            return self.model(images)[0]
        resized = np.stack([cv2.resize(image, size[::-1], interpolation=cv2.INTER_LINEAR)
                            for image in images])
        return np.stack([np.stack(list(resized_channels(p, (height, width))), axis=-1)
                         for p in self.model(resized)[0]])


def open_predictor(run_dir=None, exported=None, checkpoint=None, latest=False, scales=(1.0,),
                   flip=False, log=print):
    """The model a job runs on users' images: a run's (its checkpoint chosen by
    utils.rundir.load_run, with test-time `scales` and `flip`) or an exported one, as
    exported (ConfigError when run-only settings are given with it)."""
    if exported:
        if checkpoint or latest or flip or tuple(scales) != (1.0,):
            raise ConfigError('--checkpoint, --latest, --scales and --flip apply to --run_dir; '
                              'an exported model runs as exported')
        return ExportedPredictor(exported)
    return Predictor.from_run(run_dir, checkpoint, scales, flip, latest, log=log)
