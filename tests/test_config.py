import pytest

from utils.config import resolve_config
from utils.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / 'c.yaml'
    path.write_text(text)
    return str(path)


def test_flags_override_yaml(tmp_path):
    path = write(tmp_path, 'num_classes: 3\nbatch_size: 8\ncrop_size: [64, 96]\n')
    config = resolve_config(path, {'batch_size': '2', 'crop_size': '160,224', 'crf': 'false'})
    assert config.batch_size == 2 and config.crop_size == (160, 224) and config.crf is False
    assert config.num_classes == 3


def test_unknown_key_and_wrong_type_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'batchsize'"):
        resolve_config(write(tmp_path, 'batchsize: 2\n'))
    with pytest.raises(ConfigError, match='batch_size must be int'):
        resolve_config(write(tmp_path, 'batch_size: two\n'))
    with pytest.raises(ConfigError, match='learning_rate must be float'):
        resolve_config(None, {'learning_rate': 'fast'})
    with pytest.raises(ConfigError, match='crop_size'):
        resolve_config(None, {'crop_size': '16,16'})
    with pytest.raises(ConfigError, match=r'batch_norm_decay must be in \[0, 1\), got 1.0'):
        resolve_config(None, {'batch_norm_decay': '1'})


def test_shipped_configs_resolve():
    import glob
    import os
    from tests.conftest import ROOT
    paths = glob.glob(os.path.join(ROOT, 'configs', '*.yaml'))
    assert len(paths) >= 3
    for path in paths:
        config = resolve_config(path)
        assert len(config.class_colors) in (0, config.num_classes)
