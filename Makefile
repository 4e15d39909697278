# Everything a fresh machine needs, from the package registries only.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR := /usr/share/datasets/fashion-mnist
RUN_DIR ?= runs/reference
# Test accuracy of the reference model moves by about ±0.2 pt with the seed (docs/training.md#results);
# the main job uses the seed whose run that page shows first.
SEED ?= 6
# apt-get needs root; use sudo when we are not.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup data browser postgres load-tools venv wheel run test test-slow notebook jax-check clean photos-model photos-benchmark mutation store-model store-artefact catalogue-benchmark speed-benchmark colour-benchmark colour-table sleeve-benchmark pattern-benchmark

# The main job's data and .venv, and the tools the tests and benchmarks drive (a browser, PostgreSQL,
# h2load): `make test` runs it; `make run` takes only data and venv.
setup: data browser postgres load-tools venv

data:
	@if [ ! -f $(DATA_DIR)/t10k-labels-idx1-ubyte.gz ]; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; fi

# Debian's Chromium for the web page's browser test (Playwright drives it; no browser download).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; fi

# Debian's PostgreSQL server binaries: the benchmark test runs two workers on one study in a
# throwaway cluster (it starts and removes its own; the Debian service is not used).
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql; fi

# h2load (Debian's nghttp2-client): a C load generator that costs REST, V2 and gRPC alike, for
# benchmarks/serve_load.py --load-generator h2load (and its test).
load-tools:
	@if ! command -v h2load >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nghttp2-client; fi

venv: $(BIN)/apparel

$(BIN)/apparel: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,ray]'  # ray: the batch tests run a local cluster
	# TF Serving's gRPC stubs: the package requires `tensorflow`, which would replace tensorflow-cpu.
	$(BIN)/pip install -q --no-deps 'tensorflow-serving-api>=2.21,<2.22'
	@touch $@

# An installable wheel in dist/, the shipped models inside (package data): `pip install dist/apparel-*.whl`
# then `apparel predict photo.jpg` works anywhere. Built offline by the venv's setuptools (the dev
# extra); build/ is removed first, as setuptools would ship the stale files left in it.
wheel: venv
	rm -rf build
	$(BIN)/python -m pip wheel --no-deps --no-build-isolation --no-index -w dist .

# The main job: the reference model on the real data, evaluated and plotted. It needs only the data
# and .venv: no browser, database or load generator is installed for it.
run: data venv
	$(BIN)/apparel data
	$(BIN)/apparel train --out $(RUN_DIR) --seed $(SEED)
	$(BIN)/apparel evaluate $(RUN_DIR)
	$(BIN)/apparel plots $(RUN_DIR)

# The shipped photo model (models/photos): EfficientNet-Lite0 fine-tuned on clothing-dataset-small
# (where to get it: docs/your-own-categories.md#how-the-shipped-photo-model-was-trained). The run is written to
# runs/photos (PHOTO_RUN); to ship it, copy it into models/photos. The worn-garment crops of Clothing
# Co-Parsing are only measured on.
PHOTO_DATA ?= ../shared/datasets/clothing-dataset-small
PARSING_DATA ?= ../shared/datasets/clothing-co-parsing
PHOTO_RUN ?= runs/photos
# The training recipe of both shipped photo models' garment head (chosen on validation/:
# docs/your-own-categories.md).
PHOTO_TRAIN_FLAGS := --optimizer adamw --learning-rate 0.0003 --schedule cosine --label-smoothing 0.1 \
	--epochs 6 --batch-size 32 --seed 0
photos-model: venv
	$(BIN)/apparel train --model efficientnet-lite0 --images $(PHOTO_DATA) \
		$(PHOTO_TRAIN_FLAGS) --out $(PHOTO_RUN)

# The shipped store model (models/store, docs/store-model.md): a garment head fine-tuned on
# clothing-dataset-small and -extra (linked into runs/, not copied; the photos-model recipe, and some batches seen
# at a lower resolution, as small store thumbnails reach it), then mixed with the
# backbone's own ImageNet classifier (its top blocks taught to read small thumbnails as it reads the photo itself,
# apparel/store/distil.py) and calibrated on validation photos, and its partly int8 LiteRT artefact
# (store-artefact). Ship it by copying $(STORE_RUN) into models/store.
DATASETS ?= ../shared/datasets
STORE_RUN ?= runs/store
store-model: venv
	$(BIN)/python -m apparel.store link $(DATASETS) runs/store-photos
	$(BIN)/apparel train --model efficientnet-lite0 --images runs/store-photos \
		$(PHOTO_TRAIN_FLAGS) --augment crop,flip,colour,resolution --out runs/store-garments
	$(BIN)/python -m apparel.store distil runs/store-photos --datasets $(DATASETS) --out runs/store-imagenet
	$(BIN)/python -m apparel.store build runs/store-garments --datasets $(DATASETS) --out $(STORE_RUN) \
		--imagenet-top runs/store-imagenet/imagenet_top.weights.h5
	$(BIN)/python -m apparel.store artefact $(STORE_RUN) --datasets $(DATASETS)

# The store model's inference artefact alone (apparel/store/artefact.py; docs/benchmarks.md#partly-int8), for
# instance again for the shipped one: make store-artefact STORE_RUN=models/store
store-artefact: venv
	$(BIN)/python -m apparel.store artefact $(STORE_RUN) --datasets $(DATASETS)

# A store catalogue of every validation photo through `apparel catalog`, scored against the taxonomy.
catalogue-benchmark: venv
	$(BIN)/python benchmarks/catalogue.py --datasets $(DATASETS) --out runs/catalogue-bench

# The colour step (docs/colour.md): main colour right on the photos labelled by eye, tuning and held-out
# parts apart; the skin rule and recoloured people from Co-Parsing; its cost beside the photo path.
# The colour naming table shipped beside apparel/attributes/colour.py: again after its reference
# colours change (a test fails until then).
colour-table: venv
	$(BIN)/python -c "from apparel.attributes.colour import write_name_table; print('wrote', write_name_table())"

colour-benchmark: venv
	$(BIN)/python benchmarks/colour.py --datasets $(DATASETS) --out runs/colour-bench --worn --skin --recolour 104 --time 64 --catalog 500

# The sleeve length the store model's classes tell (docs/colour.md#sleeve-length), on the tops labelled by eye.
sleeve-benchmark: venv
	$(BIN)/python benchmarks/sleeve.py --datasets $(DATASETS) --out runs/sleeve-bench

# Whether a photo tells Solid from a patterned product (docs/colour.md#pattern), on the photos labelled by eye.
pattern-benchmark: venv
	$(BIN)/python benchmarks/pattern.py --datasets $(DATASETS) --out runs/pattern-bench

# Cold start, peak memory and steady photos/s of `apparel predict` and `apparel catalog`, the default
# runtime (the models' LiteRT artefacts) against --runtime keras in one run, and both on validation/
# (docs/benchmarks.md#prediction-speed).
speed-benchmark: venv
	$(BIN)/python benchmarks/speed_photos.py --datasets $(DATASETS) --out runs/speed-photos

# Accuracy on validation/ and on the worn crops kept aside, the Fashion-MNIST model beside it, speed.
photos-benchmark: venv
	$(BIN)/python benchmarks/worn_crops.py $(PARSING_DATA) runs/worn-crops
	$(BIN)/python benchmarks/photo_model.py --model-dir photos

# Strict: a test skipped for something `setup` installs fails (see tests/conftest.py). Two pytest-xdist
# workers, a file each at a time: most of a test's wall time is waiting on a subprocess, a server or a
# Ray cluster, and a file's module fixtures (servers, clusters, trained models) start once. TEST_WORKERS=0
# runs it in one process.
TEST_WORKERS ?= 2
test: setup
	APPAREL_STRICT_SKIPS=1 $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15

# Mutation testing of the core modules (pyproject's [tool.mutmut], docs/testing.md): mutmut plants
# one-line bugs and runs the tests that cover each (how long it takes: docs/testing.md). The last line is the
# score: "mutation score: S (killed K of N)"; the survivors are listed above it by module. A batcher
# that never answers fails its test after 3 s instead of 10 (APPAREL_TEST_HANG_S).
mutation: setup
	rm -rf mutants
	cache=$$(mktemp -d) && APPAREL_TEST_MODEL_CACHE=$$cache APPAREL_TEST_HANG_S=3 $(BIN)/mutmut run --max-children 2; \
		status=$$?; rm -rf $$cache; [ $$status = 0 ]
	$(BIN)/python tests/mutation_report.py

test-slow: setup
	$(BIN)/pytest -q -m slow

# JupyterLab in the project's environment (its kernel is the venv's Python), on the walk-through.
# Jupyter refuses to run as root unless told (containers, CI machines).
notebook: data venv
	$(BIN)/pip install -q -e '.[dev,notebook]'
	$(BIN)/jupyter lab $(shell [ "$$(id -u)" = 0 ] && echo --allow-root) notebooks/walkthrough.ipynb

clean:
	rm -rf runs .pytest_cache build dist

# The registered models on Keras's JAX backend, in a venv of their own (keras and jax from PyPI,
# no TensorFlow): the models use Keras layers only.
JAX_VENV := .venv-jax
jax-check:
	@[ -x $(JAX_VENV)/bin/python ] || { $(PYTHON) -m venv $(JAX_VENV) && $(JAX_VENV)/bin/pip install -q "jax[cpu]" keras numpy; }
	KERAS_BACKEND=jax $(JAX_VENV)/bin/python tests/jax_backend_check.py
