# make demo: set up, build the synthetic demo dataset, convert it, train the demo network (its
#   validation JPEGs), evaluate it (report.html) and say what to open.
#   DEMO_ARGS adds train.py flags (the docs test runs it with --max_steps 20).
# make test: set up, run the test suite.
# make docs: set up, build the manual (docs/, mkdocs.yml) into build/site, strictly: a broken
#   link or anchor fails.
# make lint: set up, check the code with ruff (ruff.toml).
# make gpu-check: set up (with TensorFlow's CUDA libraries), run the GPU tests verbosely and print
#   their figures; fails where nvidia-smi lists a GPU that TensorFlow cannot use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= build/demo
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: demo test lint docs gpu-check setup dev-setup clean

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
	    --dataset_val $(DEMO_DIR)/val.record --output_dir $(DEMO_DIR)/run $(DEMO_ARGS)
	$(PY) evaluate.py --run_dir $(DEMO_DIR)/run --dataset $(DEMO_DIR)/val.record \
	    --output_dir $(DEMO_DIR)/run/evaluation
	@echo
	@echo "Open next: $(DEMO_DIR)/run/evaluation/report.html (scores, per class, worst and best images),"
	@echo "  $(DEMO_DIR)/run/eval/ (the validation JPEGs), $(DEMO_DIR)/run/progress.png (loss and mIoU),"
	@echo "  and TensorBoard: $(VENV)/bin/tensorboard --logdir $(DEMO_DIR)/run"

test: dev-setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: dev-setup
	$(PY) -m ruff check .

docs: dev-setup
	$(VENV)/bin/mkdocs build --strict --site-dir build/site

gpu-check: dev-setup
	if command -v nvidia-smi >/dev/null; then \
	    $(PY) -m pip install --quiet 'tensorflow[and-cuda]==2.21.0'; fi
	$(PY) -c "import shutil, subprocess, sys, tensorflow as tf; \
	listed = shutil.which('nvidia-smi') and subprocess.run(['nvidia-smi', '-L'], \
	    capture_output=True, text=True).stdout.strip(); \
	seen = tf.config.list_physical_devices('GPU'); print('GPUs: nvidia-smi %s; TensorFlow %s' \
	    % (listed or 'none', seen)); sys.exit(1 if listed and not seen else 0)"
	$(PY) -m pytest tests/test_gpu.py -n 0 -v -s -rs -p no:cacheprovider

clean:
	rm -rf build
