# make demo: set up, build the synthetic demo dataset, convert it, train FCN-8s, write JPEGs.
# make test: set up, run the test suite.
# make lint: set up, check the code with ruff (ruff.toml).
# make gpu-check: set up (with TensorFlow's CUDA libraries), run the GPU tests verbosely and print
#   their figures; fails where nvidia-smi lists a GPU that TensorFlow cannot use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= build/demo
PYTEST_ARGS ?=

.PHONY: demo test lint gpu-check setup dev-setup clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Tests and lint also need requirements-dev.txt.
dev-setup: $(VENV)/.installed-dev

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

demo: setup
	rm -rf $(DEMO_DIR)
	$(PY) make_demo_data.py --output_dir $(DEMO_DIR)/data
	$(PY) convert_fcn_dataset.py --dataset_format camvid --config configs/demo.yaml \
	    --data_dir $(DEMO_DIR)/data --split train --output_path $(DEMO_DIR)/train.record
	$(PY) convert_fcn_dataset.py --dataset_format camvid --config configs/demo.yaml \
	    --data_dir $(DEMO_DIR)/data --split val --output_path $(DEMO_DIR)/val.record
	$(PY) train.py --config configs/demo.yaml --dataset_train $(DEMO_DIR)/train.record \
	    --dataset_val $(DEMO_DIR)/val.record --output_dir $(DEMO_DIR)/run

test: dev-setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: dev-setup
	$(PY) -m ruff check .

gpu-check: dev-setup
	if command -v nvidia-smi >/dev/null; then \
	    $(PY) -m pip install --quiet 'tensorflow[and-cuda]==2.21.0'; fi
	$(PY) -c "import shutil, subprocess, sys, tensorflow as tf; \
	listed = shutil.which('nvidia-smi') and subprocess.run(['nvidia-smi', '-L'], \
	    capture_output=True, text=True).stdout.strip(); \
	seen = tf.config.list_physical_devices('GPU'); print('GPUs: nvidia-smi %s; TensorFlow %s' \
	    % (listed or 'none', seen)); sys.exit(1 if listed and not seen else 0)"
	$(PY) -m pytest tests/test_gpu.py -v -s -rs -p no:cacheprovider

clean:
	rm -rf build
