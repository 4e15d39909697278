"""`apparel batch` and `catalog --engine ray`: the same answers from the local engine and from Ray
Data (in this process with 2 CPUs, and on a real two-node cluster on loopback), a killed worker
costs only time, a rerun resumes (and loads no model when nothing is left), a bad image is a row
with its error, a LiteRT export runs on both engines with the thread count it is given.

Ray is started once for the module (2 CPUs, a small object store) and shut down at the end; the
cluster test starts its two nodes with ``ray start --block`` and stops exactly those processes.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from apparel.artifacts import usable_cores
from apparel.attributes.colour import NAMING_VERSION
from apparel.attributes.sleeve import SLEEVE_RULE, product_sleeve
from apparel.batch.engine_ray import start_local_ray
from apparel.batch.manifest import read_manifest
from apparel.batch.output import CATEGORY_COLUMNS, COLOUR_COLUMNS, SLEEVE_COLUMNS
from apparel.batch.run import BatchConfig, classify_manifest
from apparel.errors import ParameterError, SourceError
from apparel.shop.categories import run_chooser
from conftest import PHOTO_CLASSES, another_run_holding, render_photo

# Every Ray process of these tests on loopback: Ray replaces 127.0.0.1 with the machine's address
# (for other machines to reach) unless told it runs a one-machine cluster; read when Ray is imported.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
os.environ.update(LOOPBACK_ONLY)
pa = pytest.importorskip("pyarrow")
ray = pytest.importorskip("ray", reason="Ray is the optional extra apparel[ray] (make setup installs it)")
import pyarrow.parquet as pq  # noqa: E402

PHOTOS = 240
VENV_BIN = Path(sys.executable).parent
# Rows that must come back as rows with an error, not as a failed job.
BAD_ROWS = {"missing.jpg": "file not found", "../outside.jpg": "leads outside images_dir", "": "empty image reference",
            "ftp://example.com/a.jpg": "only http and https", "broken.jpg": "", "notes.txt": "",
            "photos": "a folder, not an image file"}
OBJECT_STORE = 100 * 1024**2


def table(out: Path):
    """The data set in ``out`` as one table, by manifest row."""
    return pq.read_table(out).sort_by("manifest_row")


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """A manifest of PHOTOS rendered photos with an ID column of leading zeros, and bad rows."""
    root = tmp_path_factory.mktemp("batch")
    (root / "photos").mkdir()
    rng = np.random.default_rng(0)
    lines = ["sku,image,note"]
    for index in range(PHOTOS):
        render_photo(index % len(PHOTO_CLASSES), rng).save(root / "photos" / f"{index}.jpg", quality=85)
        lines.append(f"{index:05d},photos/{index}.jpg,n{index}")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 40)
    (root / "notes.txt").write_text("not an image")
    lines += [f"bad{i},{reference},x" for i, reference in enumerate(BAD_ROWS)]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def local_output(shop, photo_run) -> Path:
    out = shop / "out-local"
    classify_manifest(shop / "manifest.csv", out, BatchConfig(model_dir=str(photo_run), shard_rows=100))
    return out


@pytest.fixture(scope="module")
def local_ray():
    """Ray in this process: 2 CPUs, a small object store, no dashboard; shut down afterwards."""
    start_local_ray(num_cpus=2, include_dashboard=False, object_store_memory=OBJECT_STORE, log_to_driver=False,
                    configure_logging=False)
    yield
    ray.shutdown()


def test_a_local_ray_that_misses_its_startup_time_is_started_once_more(monkeypatch):
    """Ray gives its local processes fixed times to come up; a busy machine (CI's two cores) can
    miss them once: the node's registration (a bare Exception) or the GCS's port file (a RuntimeError)."""
    import types

    for missed in (Exception("The current node timed out during startup. This could happen because …"),
                   RuntimeError("Timed out waiting for file /tmp/ray/session_x/gcs_server_port_abc")):
        calls = []

        def init(**options):
            calls.append("init")
            if calls.count("init") == 1:
                raise missed

        fake = types.SimpleNamespace(init=init, shutdown=lambda: calls.append("shutdown"))
        monkeypatch.setitem(sys.modules, "ray", fake)
        start_local_ray(num_cpus=1)
        assert calls == ["init", "shutdown", "init"]

    def broken(**options):
        calls.append("broken")
        raise Exception("some lasting failure")

    fake.init = broken
    calls.clear()
    with pytest.raises(Exception, match="some lasting failure"):
        start_local_ray(num_cpus=1)
    assert calls == ["broken", "shutdown", "broken"], "tried twice, then its failure is raised"


def test_a_quote_never_closed_in_a_manifest_is_refused_not_read_as_one_row(tmp_path):
    (tmp_path / "m.csv").write_text('id,image\n1,a.jpg\n2,"b.jpg\n3,c.jpg\n')
    with pytest.raises(SourceError, match="image cell of row 1 .* holds a line break: a quote opened there is never closed"):
        read_manifest(tmp_path / "m.csv")


@pytest.mark.parametrize("text", ["image\na.jpg\n", "image,id\na.jpg,1\n"], ids=["one column", "two columns"])
def test_a_utf16_manifest_is_told_to_be_saved_as_utf8(tmp_path, text):
    (tmp_path / "m.csv").write_bytes(text.encode("utf-16"))  # with its byte-order mark, as spreadsheets save it
    with pytest.raises(SourceError, match="cannot be read as CSV: it is UTF-16 text .*; save the manifest as UTF-8$") \
            as error:
        read_manifest(tmp_path / "m.csv")
    assert str(error.value).isprintable()  # Arrow's reason quoted the rows, NUL bytes and all


def test_a_photo_or_a_semicolon_table_given_as_the_manifest_is_told_what_a_manifest_is(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(tmp_path / "shirt.jpg")
    with pytest.raises(SourceError, match="cannot be read as CSV: it holds bytes that are no text; give the manifest") \
            as error:
        read_manifest(tmp_path / "shirt.jpg")
    assert str(error.value).isprintable()
    # Decimal commas in the cells made Arrow fail before the header was judged; a tab was "no text".
    for text, separator in (("sku;image\n1;a.jpg\n", "semicolons"), ("sku;image;price\n1;a.jpg;1,5\n", "semicolons"),
                            ("sku\timage\n1\ta,b.jpg\n", "tabs")):
        (tmp_path / "m.csv").write_text(text)
        with pytest.raises(SourceError, match=f"one column of names separated by {separator}; a CSV manifest separates"):
            read_manifest(tmp_path / "m.csv")


def test_settings_that_would_exhaust_the_machine_and_an_empty_out_are_refused(tmp_path):
    from apparel.batch.config import BatchConfig
    from apparel.batch.run import classify_manifest

    for key, value in (("batch_size", 100_000_000), ("read_threads", 100_000), ("predictor_threads", 100_000)):
        with pytest.raises(ParameterError, match=f"{key} must be at most"):
            BatchConfig(**{key: value})
    (tmp_path / "m.csv").write_text("image\na.jpg\n")
    with pytest.raises(ParameterError, match="out is empty") as error:
        classify_manifest(tmp_path / "m.csv", "")
    assert error.value.parameters == ("out",) and sorted(path.name for path in tmp_path.iterdir()) == ["m.csv"]


def test_manifest_image_column_by_name_or_flag(tmp_path):
    (tmp_path / "m.csv").write_text("id,Image_URL,url\n007,a.jpg,b.jpg\n")
    manifest = read_manifest(tmp_path / "m.csv")
    assert manifest.image_column == "Image_URL" and manifest.references() == ["a.jpg"]
    assert manifest.table.column("id").to_pylist() == ["007"]          # text, never guessed as a number
    assert read_manifest(tmp_path / "m.csv", "url").references() == ["b.jpg"]
    with pytest.raises(ParameterError, match="'photo' is not a column"):
        read_manifest(tmp_path / "m.csv", "photo")
    (tmp_path / "n.csv").write_text("id,picture\n1,a.jpg\n")
    with pytest.raises(ParameterError, match="no column named image, image_url, url, path"):
        read_manifest(tmp_path / "n.csv")
    # A list of paths with no header: its first photo was read as the column's name and never classified.
    for first in ("photos/a.jpg", "https://cdn.example.com/a"):
        (tmp_path / "list.txt").write_text(f"{first}\nphotos/b.jpg\n")
        for column in (None, first):  # naming that "column", as the message used to invite, lost it too
            with pytest.raises(SourceError, match=f"has no header line: its first line, '{first}', is an image, "
                                                  "not a column's name; add a first line naming the column"):
                read_manifest(tmp_path / "list.txt", column)
    (tmp_path / "shopify.csv").write_text("Title,URL handle,Product image URL\nA,a,a.jpg\n")   # the current header
    assert read_manifest(tmp_path / "shopify.csv").image_column == "Product image URL"
    pq.write_table(pa.table({"path": ["a.jpg"], "error": ["x"]}), tmp_path / "m.parquet")
    with pytest.raises(SourceError, match="has a column 'error'"):
        read_manifest(tmp_path / "m.parquet", reserved=("error",))
    # Two columns of one name (a KeyError, or an output no reader opened); a case-insensitive reader's clash.
    (tmp_path / "twice.csv").write_text("sku,path,sku\n1,a.jpg,2\n")
    with pytest.raises(SourceError, match="has two columns named 'sku' and 'sku'; rename one"):
        read_manifest(tmp_path / "twice.csv")
    (tmp_path / "label.csv").write_text("path,Label\na.jpg,shirt\n")
    with pytest.raises(SourceError, match="has a column 'Label', which the output adds"):
        read_manifest(tmp_path / "label.csv", reserved=("label",))
    (tmp_path / "latin.csv").write_bytes("sku,path\ncaf\xe9,a.jpg\n".encode("latin-1"))
    with pytest.raises(SourceError, match="invalid UTF8.*; save the manifest as UTF-8$"):
        read_manifest(tmp_path / "latin.csv")


def test_an_image_column_that_is_not_text_is_named_with_what_it_should_be(tiny_run, tmp_path, capsys):
    from apparel.cli import main

    images = pa.array([b"a.jpg", None, b"caf\xe9.jpg", b"\xff.jpg"], type=pa.binary())
    pq.write_table(pa.table({"id": [1, 2, 3, 4], "image": images}), tmp_path / "bytes.parquet")
    with pytest.raises(SourceError, match=r"bytes.parquet: the image column 'image' holds bytes that are not UTF-8 "
                                          r"text in row 2 \(from 0, as manifest_row counts; invalid continuation "
                                          r"byte at byte 3\); it should hold one path or URL per row, as UTF-8 text"):
        read_manifest(tmp_path / "bytes.parquet")
    pq.write_table(pa.table({"url": [b"a.jpg", "é.jpg".encode()]}), tmp_path / "good.parquet")
    assert read_manifest(tmp_path / "good.parquet").references() == ["a.jpg", "é.jpg"]   # UTF-8 bytes are text
    nested = {"list": pa.array([["a.jpg"], ["b.jpg"]]), "struct": pa.array([{"src": "a.jpg"}, {"src": "b.jpg"}])}
    for kind, column in nested.items():
        pq.write_table(pa.table({"path": column}), tmp_path / f"{kind}.parquet")
        with pytest.raises(ParameterError, match=f"^image_column 'path': the image column of .*{kind}.parquet is "
                                                 f"{kind}<.*>; it should be text \\(string\\), one path or URL per row"):
            read_manifest(tmp_path / f"{kind}.parquet")
    arguments = ["batch", str(tmp_path / "struct.parquet"), "--out", str(tmp_path / "out"), "--model-dir", str(tiny_run)]
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert "error: image_column 'path': the image column of" in error and "is struct<src: string>" in error
    assert error.rstrip().endswith("(--image-column)")
    assert "bug" not in error and not (tmp_path / "out").exists()


def test_local_engine_writes_the_documented_schema_and_bad_rows(shop, local_output):
    result = table(local_output)
    assert result.num_rows == PHOTOS + len(BAD_ROWS)
    assert result.column_names == ["sku", "image", "note", "manifest_row", "label", "probability", "top_labels",
                                   "top_probabilities", "category_id", "category_gid", "category_path",
                                   "category_confidence", "category_reason", "color_name", "color_handle",
                                   "color_gid", "color_confidence", "sleeve_length_type_name",
                                   "sleeve_length_type_handle", "sleeve_length_type_gid",
                                   "sleeve_length_type_confidence", "model_version", "error"]
    assert result.schema.field("category_confidence").type == pa.float32()
    assert result.column("manifest_row").to_pylist() == list(range(result.num_rows))
    assert result.column("sku")[7].as_py() == "00007"
    good = result.slice(0, PHOTOS).to_pylist()
    assert all(row["error"] is None and row["label"] in PHOTO_CLASSES for row in good)
    assert all(len(row["top_labels"]) == 3 and row["top_labels"][0] == row["label"] for row in good)
    assert all(row["top_probabilities"] == sorted(row["top_probabilities"], reverse=True) for row in good)
    # Top 3 of 3 classes is the whole vector: each row's category is the shipped mapping's choice from it.
    chooser = run_chooser(None, PHOTO_CLASSES)
    for row in good:
        probabilities = dict(zip(row["top_labels"], row["top_probabilities"]))
        chosen = chooser.choose([probabilities[name] for name in PHOTO_CLASSES]).to_dict()
        assert chosen["reason"] is None  # Clothing and Shoes hold each row between them: one reaches 0.5
        keys = ("id", "gid", "path", "reason")
        assert [row[f"category_{key}"] for key in keys] == [chosen[key] for key in keys]
        assert row["category_confidence"] == pytest.approx(chosen["confidence"], abs=1e-6)
        # This model's record names no class that tells a sleeve length: none (the next test gives one).
        sleeve = product_sleeve([probabilities[name] for name in PHOTO_CLASSES], chooser, chosen["id"])
        found = [row[f"sleeve_length_type_{key}"] for key in ("name", "handle", "gid")]
        assert found == ([sleeve.value.name, sleeve.value.handle, sleeve.value.gid] if sleeve else [None] * 3)
    bad = result.slice(PHOTOS).to_pylist()
    for row, (reference, reason) in zip(bad, BAD_ROWS.items()):
        assert row["image"] == reference and row["label"] is None and row["top_labels"] is None
        assert all(row[name] is None for name in (*CATEGORY_COLUMNS, *SLEEVE_COLUMNS))
        assert row["error"] and reason in row["error"]
    assert all(row[name] is None for row in good + bad for name in COLOUR_COLUMNS)  # no --colour: none read
    assert len({row["model_version"] for row in good + bad}) == 1
    assert len(list(local_output.glob("part-*.parquet"))) == 3              # 246 rows, 100 a file


def test_the_sleeve_columns_give_the_length_the_classes_tell_where_the_category_takes_one(sleeve_run):
    from apparel.batch.output import category_columns

    chooser = run_chooser(sleeve_run, PHOTO_CLASSES)  # dress → Dresses, shoes → Shoes, t-shirt → T-Shirts (short)
    probabilities = np.array([[0.05, 0.05, 0.90],    # surely a T-shirt: short sleeves
                              [0.20, 0.25, 0.55],    # a T-shirt, but not sure enough of it
                              [0.02, 0.96, 0.02],    # shoes: no sleeves to tell
                              [0.05, 0.05, 0.90]])   # not read
    probabilities[3, 0] = np.nan  # not read: the engines hand such rows over as NaN
    columns = category_columns(probabilities, [False, False, False, True], chooser)
    assert columns["sleeve_length_type_name"] == ["Short", None, None, None]
    assert columns["sleeve_length_type_gid"][0] == "gid://shopify/TaxonomyValue/169"
    assert columns["sleeve_length_type_confidence"][0] == pytest.approx(0.9)
    assert all(value is None for value in category_columns(probabilities, [False] * 4, None)["sleeve_length_type_name"])
    # A class whose probability is NaN counts as none, not as the whole row's undoing.
    nan_polo = np.array([[0.05, np.nan, 0.90]])
    assert category_columns(nan_polo, [False], chooser)["sleeve_length_type_name"] == ["Short"]
    # A model whose record names no sleeve classes (the shipped photos model) tells none.
    assert category_columns(probabilities[:1], [False], run_chooser(None, PHOTO_CLASSES))[
        "sleeve_length_type_name"] == [None]


def test_a_fashion_mnist_model_follows_its_own_contract(shop, tmp_path):
    from apparel.inference.prediction import DEFAULT_MODEL_DIR
    from apparel.kinds.fashion_mnist.data import CLASS_NAMES

    (tmp_path / "m.csv").write_text("path\n" + "".join(f"photos/{i}.jpg\n" for i in range(8)))
    classify_manifest(tmp_path / "m.csv", tmp_path / "out",
                      BatchConfig(model_dir=str(DEFAULT_MODEL_DIR), images_dir=str(shop), top_k=10))
    result = table(tmp_path / "out")
    assert set(result.column("label").to_pylist()) <= set(CLASS_NAMES)
    assert all(len(names) == 10 for names in result.column("top_labels").to_pylist())


def test_ray_engine_gives_identical_predictions(shop, photo_run, local_output, local_ray):
    out = shop / "out-ray"
    report = classify_manifest(shop / "manifest.csv", out, BatchConfig(model_dir=str(photo_run), engine="ray"))
    assert (report.classified, report.failed) == (PHOTOS, len(BAD_ROWS))
    assert table(out).equals(table(local_output))
    # Each part a run of rows in manifest order, as the local engine writes them (blocks finished out
    # of order went into the part being filled: rows 25–47 and 80–81).
    small = shop / "out-ray-parts"
    classify_manifest(shop / "manifest.csv", small, BatchConfig(model_dir=str(photo_run), engine="ray", shard_rows=3,
                                                                batch_size=2))
    parts = [pq.read_table(part, columns=["manifest_row"]).column(0).to_pylist()
             for part in sorted(small.glob("part-*.parquet"))]
    assert len(parts) > 1 and sum(parts, []) == list(range(sum(map(len, parts))))


def test_colour_columns_name_each_photo_s_colour_on_both_engines(shop, photo_run, local_ray, tmp_path):
    from apparel.attributes import has_colour, product_colour
    from apparel.contract import InputContract
    from apparel.taxonomy import load_taxonomy

    lines = ["image"] + [f"photos/{i}.jpg" for i in range(6)] + ["missing.jpg"]
    (shop / "colour.csv").write_text("\n".join(lines) + "\n")
    outputs = {}
    for engine in ("local", "ray"):
        outputs[engine] = tmp_path / engine
        classify_manifest(shop / "colour.csv", outputs[engine], BatchConfig(model_dir=str(photo_run), engine=engine,
                                                                             colour=True))
    result = table(outputs["local"])
    assert result.equals(table(outputs["ray"]))
    contract = InputContract.for_run(photo_run)
    rows = result.to_pylist()
    for row in rows[:-1]:
        colour = product_colour(contract.decode(shop / row["image"])).to_dict()
        assert has_colour(load_taxonomy().get(row["category_id"]))  # every category here takes a colour
        assert (row["color_name"], row["color_handle"], row["color_gid"]) == (colour["name"], colour["handle"],
                                                                              colour["gid"])
        assert row["color_confidence"] == pytest.approx(colour["confidence"], abs=1e-6)
    assert rows[-1]["error"] and all(rows[-1][name] is None for name in COLOUR_COLUMNS)
    # The colour is part of what a folder holds: a resume without it is refused, not mixed in.
    with pytest.raises(ParameterError, match="was begun with the colour read; resume it with colour, or give a new"):
        classify_manifest(shop / "colour.csv", outputs["local"], BatchConfig(model_dir=str(photo_run)))
    # So is how it is named: a folder begun before the naming changed (its record without the
    # version) is refused too; it resumed with half its rows named the old way.
    record_path = outputs["local"] / "_batch.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({key: value for key, value in record.items() if key != "colour_naming"}))
    with pytest.raises(ValueError, match=f"colour_naming: None, now {NAMING_VERSION}"):
        classify_manifest(shop / "colour.csv", outputs["local"], BatchConfig(model_dir=str(photo_run), colour=True))
    # And a folder begun before the sleeve length's columns: its files hold none.
    record_path.write_text(json.dumps({key: value for key, value in record.items() if key != "sleeve_rule"}))
    with pytest.raises(ValueError, match="was begun by an earlier apparel, whose files have no sleeve length columns"):
        classify_manifest(shop / "colour.csv", outputs["local"], BatchConfig(model_dir=str(photo_run), colour=True))
    record_path.write_text(json.dumps({**record, "sleeve_rule": SLEEVE_RULE + 1}))
    with pytest.raises(ValueError, match=f"sleeve_rule: {SLEEVE_RULE + 1}, now {SLEEVE_RULE}"):
        classify_manifest(shop / "colour.csv", outputs["local"], BatchConfig(model_dir=str(photo_run), colour=True))


def test_a_killed_ray_worker_costs_only_time(shop, photo_run, local_output, local_ray):
    import psutil

    killed = []

    def kill_the_model_actor(count):
        # After the first results, while batches are still in flight: the actor holding the model.
        if killed:
            return
        for process in psutil.Process().children(recursive=True):
            try:
                if "Predict" in " ".join(process.cmdline()):
                    process.send_signal(signal.SIGKILL)
                    killed.append(process.pid)
            except psutil.NoSuchProcess:
                continue

    out = shop / "out-killed"
    report = classify_manifest(shop / "manifest.csv", out, BatchConfig(model_dir=str(photo_run), engine="ray"),
                               progress=kill_the_model_actor)
    assert killed, "no model actor was found to kill"
    assert (report.classified, report.failed) == (PHOTOS, len(BAD_ROWS))
    result = table(out)
    assert result.column("manifest_row").to_pylist() == list(range(PHOTOS + len(BAD_ROWS)))
    assert result.equals(table(local_output))


def test_rerun_skips_the_rows_already_written(shop, photo_run, local_output):
    out = shop / "out-resume"
    config = BatchConfig(model_dir=str(photo_run), shard_rows=40)
    seen = []

    def crash_midway(count):
        seen.append(count)
        if sum(seen) >= 100:   # after four batches of 32
            raise KeyboardInterrupt  # the driver dies: whole files stay, the rest is lost

    with pytest.raises(KeyboardInterrupt):
        classify_manifest(shop / "manifest.csv", out, config, progress=crash_midway)
    written = table(out).num_rows
    assert written == 120                                                     # three whole files of 40
    report = classify_manifest(shop / "manifest.csv", out, config)
    assert report.skipped == written and report.classified + report.failed == PHOTOS + len(BAD_ROWS) - written
    assert table(out).equals(table(local_output))
    again = classify_manifest(shop / "manifest.csv", out, config)
    assert (again.skipped, again.classified, again.failed) == (PHOTOS + len(BAD_ROWS), 0, 0)
    with pytest.raises(ParameterError, match="top_k"):
        classify_manifest(shop / "manifest.csv", out, config.replace(top_k=2))


# LiteRT's kernels sum in another order than TensorFlow's: an export agrees with its Keras model
# to float32 rounding, the bound tests/test_export.py holds it to.
LITERT_TOLERANCE = 1e-5


def small_manifest(path: Path, photos: int) -> Path:
    """A manifest of the shop's first ``photos`` photos and a missing one (read with images_dir=shop)."""
    path.write_text("image\n" + "".join(f"photos/{index}.jpg\n" for index in range(photos)) + "missing.jpg\n")
    return path


@pytest.fixture(scope="module")
def tiny_run(tiny_dataset, tmp_path_factory) -> Path:
    """The services' seconds-long Fashion-MNIST model: its LiteRT export takes a second, the photo
    model's fifteen."""
    from serving import train_tiny_model

    return train_tiny_model(tiny_dataset, tmp_path_factory.mktemp("tiny-run"))


@pytest.fixture(scope="module")
def litert_export(tiny_run, tmp_path_factory) -> Path:
    """``tiny_run`` as LiteRT, with its contract in model.tflite.json (so no run directory is needed)."""
    from apparel.inference.export import export_model

    return export_model(tiny_run, "litert", tmp_path_factory.mktemp("litert") / "model.tflite")


def test_litert_export_through_both_engines(shop, tiny_run, litert_export, local_ray, tmp_path):
    manifest = small_manifest(tmp_path / "m.csv", 8)
    # Batches of 4: two full ones and one of a single row, predicted at its place in four slots.
    keras = BatchConfig(model_dir=str(tiny_run), images_dir=str(shop), batch_size=4, runtime="keras")
    classify_manifest(manifest, tmp_path / "keras", keras)
    expected = table(tmp_path / "keras")
    results = {}
    for engine in ("local", "ray"):
        config = keras.replace(model_dir=None, litert=str(litert_export), engine=engine)
        report = classify_manifest(manifest, tmp_path / engine, config)
        assert (report.classified, report.failed) == (8, 1)
        results[engine] = table(tmp_path / engine)
    assert results["ray"].column("label").equals(results["local"].column("label"))
    for result in results.values():
        assert result.column("error").to_pylist() == expected.column("error").to_pylist()
        np.testing.assert_allclose(np.array(result.column("top_probabilities").to_pylist()[:8]),
                                   np.array(expected.column("top_probabilities").to_pylist()[:8]),
                                   atol=LITERT_TOLERANCE)


def test_model_version_is_the_services_and_a_resume_with_another_runtime_is_refused(shop, tiny_run, tmp_path):
    """The default runtime wrote the LiteRT file's digest while the service reports model.keras's, so
    batch rows could not be joined to served answers on it; the runtime still decides a resume."""
    from apparel.artifacts import file_digest
    from apparel.errors import ParameterError

    manifest = small_manifest(tmp_path / "m.csv", 3)
    config = BatchConfig(model_dir=str(tiny_run), images_dir=str(shop), batch_size=4)
    classify_manifest(manifest, tmp_path / "out", config)
    assert set(table(tmp_path / "out").column("model_version").to_pylist()) == {
        file_digest(tiny_run / "model.keras")[:12]}
    with pytest.raises(ParameterError, match="holds the output of another run \\(artefact: '[0-9a-f]{12}', now None\\)"):
        classify_manifest(manifest, tmp_path / "out", config.replace(runtime="keras"))
    # An output begun before (its record named the LiteRT file as model_version, no artefact) still
    # resumes with the same file answering, its new rows keeping the version it began with.
    import json

    record = json.loads((tmp_path / "out" / "_batch.json").read_text())
    old = {key: value for key, value in record.items() if key not in ("artefact", "colour_rule", "colour_naming")}
    old["model_version"] = record["artefact"]
    (tmp_path / "out" / "_batch.json").write_text(json.dumps(old))
    for part in (tmp_path / "out").glob("part-*.parquet"):
        part.unlink()
    classify_manifest(manifest, tmp_path / "out", config)
    assert set(table(tmp_path / "out").column("model_version").to_pylist()) == {record["artefact"]}


def test_an_empty_manifest_gives_an_empty_table_with_the_columns(shop, tiny_run, tmp_path):
    """A manifest of a header alone wrote no Parquet file: a reader of the folder found no columns."""
    (tmp_path / "m.csv").write_text("sku,path\n")
    config = BatchConfig(model_dir=str(tiny_run), images_dir=str(shop))
    for _ in range(2):  # a rerun adds no second file
        classify_manifest(tmp_path / "m.csv", tmp_path / "out", config)
        assert len(list((tmp_path / "out").glob("part-*.parquet"))) == 1
    result = table(tmp_path / "out")
    assert result.num_rows == 0 and {"sku", "path", "manifest_row", "label", "model_version", "error"} <= set(
        result.column_names)


def test_predictor_threads_reach_the_litert_interpreter(shop, litert_export, tmp_path, monkeypatch):
    import ai_edge_litert.interpreter

    from apparel.inference.prediction import Predictor

    threads = []
    interpreter = ai_edge_litert.interpreter.Interpreter

    def recording(*args, num_threads=None, **kwargs):
        threads.append(num_threads)
        return interpreter(*args, num_threads=num_threads, **kwargs)

    monkeypatch.setattr(ai_edge_litert.interpreter, "Interpreter", recording)
    config = BatchConfig(litert=str(litert_export), images_dir=str(shop), predictor_threads=1)
    classify_manifest(small_manifest(tmp_path / "m.csv", 2), tmp_path / "out", config)
    Predictor.from_litert(litert_export, threads=3)
    Predictor.from_litert(litert_export)
    assert threads == [1, 3, usable_cores()]


def photo_files(folder: Path, count: int) -> list[Path]:
    """``count`` rendered photos in ``folder`` (made), by absolute path."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for index in range(count):
        render_photo(index % len(PHOTO_CLASSES), rng).save(folder / f"{index}.jpg", quality=85)
    return [(folder / f"{index}.jpg").resolve() for index in range(count)]


def test_absolute_paths_inside_the_images_dir_and_shopify_s_image_column(tiny_run, tmp_path):
    """A manifest as `find /data -name '*.jpg'` writes it, in a Shopify export's image column."""
    data = tmp_path / "data"
    photos = photo_files(data / "shirts", 3)
    secret = photo_files(tmp_path / "private", 1)[0]
    lines = ["Handle,Image Src"] + [f"h{index},{photo}" for index, photo in enumerate(photos)]
    lines += [f"dots,{data}/shirts/../shirts/0.jpg", f"escape,{secret}", f"sneaky,{data}/../private/0.jpg"]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    config = BatchConfig(model_dir=str(tiny_run), images_dir=str(data))
    report = classify_manifest(tmp_path / "m.csv", tmp_path / "out", config)
    assert (report.classified, report.failed) == (4, 2)
    errors = table(tmp_path / "out").column("error").to_pylist()
    assert errors[:4] == [None] * 4
    assert all("leads outside images_dir" in error for error in errors[4:])       # still refused
    assert report.errors == tuple(f"row {row} ({lines[row + 1].split(',')[1]!r}): {errors[row]}" for row in (4, 5))
    everywhere = classify_manifest(tmp_path / "m.csv", tmp_path / "out-root", config.replace(images_dir="/"))
    assert (everywhere.classified, everywhere.failed) == (6, 0)


def test_a_run_in_which_every_row_failed_exits_non_zero_with_the_first_errors(tiny_run, tmp_path, capsys):
    from apparel.cli import main

    (tmp_path / "m.csv").write_text("path\n" + "".join(f"photos/{index}.jpg\n" for index in range(7)))
    arguments = ["batch", str(tmp_path / "m.csv"), "--out", str(tmp_path / "out"), "--model-dir", str(tiny_run)]
    assert main(arguments) == 1
    captured = capsys.readouterr()
    assert "7 rows: 0 classified, 7 unreadable" in captured.out
    assert "error: row 0 ('photos/0.jpg'): file not found" in captured.err
    assert "error: row 4 ('photos/4.jpg'): file not found" in captured.err and "row 5 " not in captured.err
    assert "… and 2 more, each in its row's error column" in captured.err
    assert "apparel batch: error: every row failed (7)" in captured.err
    photo_files(tmp_path / "photos", 1)
    (tmp_path / "n.csv").write_text("path\nphotos/0.jpg\nphotos/9.jpg\n")                 # one is read: success
    assert main(["batch", str(tmp_path / "n.csv"), "--out", str(tmp_path / "out-n"), "--model-dir", str(tiny_run)]) == 0
    assert "error: row 1 ('photos/9.jpg'): file not found" in capsys.readouterr().err


def test_rows_that_failed_are_read_again_on_request_and_a_folder_without_a_prediction_fails(tiny_run, tmp_path,
                                                                                            capsys):
    """A rerun of a run whose every row failed exits 1 again (it exited 0, "7 already in out"), and
    --retry-failed reads those rows again once their cause is mended, each row still once."""
    from apparel.cli import main

    (tmp_path / "m.csv").write_text("path\n" + "".join(f"photos/{index}.jpg\n" for index in range(7)))
    out = tmp_path / "out"
    arguments = ["batch", str(tmp_path / "m.csv"), "--out", str(out), "--model-dir", str(tiny_run), "--shard-rows", "3"]
    assert main(arguments) == 1
    capsys.readouterr()
    assert main(arguments) == 1
    said = capsys.readouterr()
    assert "7 already in" in said.out and "(7 of them unreadable then: --retry-failed reads them again)" in said.out
    assert f"no row of {out} holds a prediction" in said.err
    photo_files(tmp_path / "photos", 5)                                       # the cause mended, for five of them
    assert main(arguments + ["--retry-failed"]) == 0
    assert "5 classified, 2 unreadable" in capsys.readouterr().out
    rows = table(out)
    assert rows.column("manifest_row").to_pylist() == list(range(7))
    assert rows.column("error").null_count == 5
    assert main(arguments) == 0                                               # 5 predictions in the folder
    assert "(2 of them unreadable then" in capsys.readouterr().out
    assert main(arguments + ["--retry-failed"]) == 0    # the two fail again: the folder's five still stand
    said = capsys.readouterr()
    assert "0 classified, 2 unreadable" in said.out and "every row failed" not in said.err


def test_a_killed_writer_s_part_is_removed_and_a_damaged_part_is_named(tiny_run, tmp_path):
    photo_files(tmp_path / "photos", 4)
    (tmp_path / "m.csv").write_text("path\n" + "".join(f"photos/{index}.jpg\n" for index in range(4)))
    out, config = tmp_path / "out", BatchConfig(model_dir=str(tiny_run), shard_rows=2)
    classify_manifest(tmp_path / "m.csv", out, config)
    parts = sorted(out.glob("part-*.parquet"))
    killed = out / f".{parts[0].name[:-8]}-0badc0de.parquet.partial-x1y2z3.parquet"  # what a kill mid-write leaves
    killed.write_bytes(b"")
    assert classify_manifest(tmp_path / "m.csv", out, config).skipped == 4
    assert not killed.exists()                  # DuckDB's 'out/*.parquet' failed on it: "too small to be a Parquet file"
    parts[1].write_bytes(b"PAR1 not really")
    with pytest.raises(ParameterError, match=f"out {out}: {parts[1].name} is damaged .*; remove it and rerun"):
        classify_manifest(tmp_path / "m.csv", out, config)
    parts[1].unlink()
    again = classify_manifest(tmp_path / "m.csv", out, config)
    assert (again.skipped, again.classified) == (2, 2)
    # A part copied in again under another name: its rows were counted once and read twice.
    copied = out / f"part-000000000000-{'f' * 8}.parquet"
    copied.write_bytes(sorted(out.glob("part-000000000000-*.parquet"))[0].read_bytes())
    with pytest.raises(SourceError, match=r"holds manifest row 0 in more than one part \(part-000000000000-.*, "
                                          r"part-000000000000-ffffffff.parquet\), and 2 such rows in all"):
        classify_manifest(tmp_path / "m.csv", out, config)
    copied.unlink()
    (out / "_batch.json").write_text("{")
    with pytest.raises(ParameterError, match="_batch.json is damaged, .*; give a new folder, or empty this one"):
        classify_manifest(tmp_path / "m.csv", out, config)


def test_a_full_disk_names_the_file_and_a_rerun_resumes_exactly(tiny_run, tmp_path, monkeypatch, capsys):
    from apparel.batch import output
    from apparel.cli import main

    photo_files(tmp_path / "photos", 5)
    (tmp_path / "m.csv").write_text("path\n" + "".join(f"photos/{index}.jpg\n" for index in range(5)))
    config = BatchConfig(model_dir=str(tiny_run), shard_rows=2, batch_size=2)
    classify_manifest(tmp_path / "m.csv", tmp_path / "clean", config)
    no_space = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full(*args, **kwargs):
        raise no_space

    with monkeypatch.context() as patch:
        patch.setattr(output, "write_json", full)
        with pytest.raises(OSError, match=f"^\\[Errno {errno.ENOSPC}\\] No space left on device while writing "
                                          f"{tmp_path / 'out' / '_batch.json'}; nothing finished before it is lost"):
            classify_manifest(tmp_path / "m.csv", tmp_path / "out", config)
    write_table, shards = pq.write_table, []

    def filling_up(table, where, **kwargs):                # the second shard finds the disk full
        shards.append(where)
        if len(shards) == 2:
            raise no_space
        return write_table(table, where, **kwargs)

    arguments = ["batch", str(tmp_path / "m.csv"), "--out", str(tmp_path / "out"), "--model-dir", str(tiny_run),
                 "--shard-rows", "2", "--batch-size", "2"]
    with monkeypatch.context() as patch:
        patch.setattr(pq, "write_table", filling_up)
        assert main(arguments) == 2
    error = capsys.readouterr().err
    assert (f"apparel batch: error: [Errno {errno.ENOSPC}] No space left on device while writing "
            f"{tmp_path / 'out' / 'part-000000000002-'}") in error
    assert "rerun the same command, which resumes" in error
    assert sorted(path.name[:17] for path in (tmp_path / "out").iterdir()) == ["_batch.json", "part-000000000000"]
    assert main(arguments) == 0                                  # resumed: the rows of the lost shard and after
    assert "5 rows: 3 classified, 0 unreadable (a row each, with its error), 2 already in" in capsys.readouterr().out
    assert table(tmp_path / "out").equals(table(tmp_path / "clean"))


def test_one_run_at_a_time_writes_an_output_folder(tiny_run, tmp_path, capsys):
    """Two runs into one --out would each write every row (80 rows for 40): the second is refused."""
    from apparel.cli import main

    photo_files(tmp_path / "photos", 3)
    (tmp_path / "m.csv").write_text("path\n" + "".join(f"photos/{index}.jpg\n" for index in range(3)))
    out, config = tmp_path / "out", BatchConfig(model_dir=str(tiny_run))
    with another_run_holding(out / "_batch.lock"):
        with pytest.raises(ParameterError, match=f"^out {out}: another run is writing there "
                                                 f"\\(it holds {out / '_batch.lock'}\\); wait for it to end"):
            classify_manifest(tmp_path / "m.csv", out, config)
        assert main(["batch", str(tmp_path / "m.csv"), "--out", str(out), "--model-dir", str(tiny_run)]) == 2
        assert "another run is writing there" in capsys.readouterr().err.splitlines()[-1]
    assert sorted(path.name for path in out.iterdir()) == ["_batch.lock"]      # left by the holder; it locks nothing
    assert classify_manifest(tmp_path / "m.csv", out, config).classified == 3
    assert table(out).num_rows == 3
    assert [path.name for path in out.iterdir() if not path.name.startswith("part-")] == ["_batch.json"]


def test_cores_are_counted_where_there_is_no_cpu_affinity(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # as on macOS and Windows
    assert usable_cores() == os.cpu_count()


def test_a_finished_run_resumed_loads_no_model(shop, tiny_run, tmp_path, monkeypatch):
    from apparel.batch import predicting

    manifest = small_manifest(tmp_path / "m.csv", 3)
    config = BatchConfig(model_dir=str(tiny_run), images_dir=str(shop))
    classify_manifest(manifest, tmp_path / "out", config)

    def no_loading(settings):
        raise AssertionError("the model was loaded with nothing left to predict")

    monkeypatch.setattr(predicting, "settings_predictor", no_loading)
    again = classify_manifest(manifest, tmp_path / "out", config)
    assert (again.skipped, again.classified, again.failed) == (4, 0, 0)


def test_catalog_on_ray_is_byte_identical(shop, photo_run, local_ray, tmp_path):
    rows = ["Handle,Title,Product Category,Type,Tags,Image Src,Image Position"]
    for index in range(12):
        rows.append(f"item-{index},Item {index},,,summer,photos/{index}.jpg,1")
    rows.append("broken,Broken,,,,broken.jpg,1")
    rows.append("broken,,,,,photos/20.jpg,2")                                     # its second image is read
    rows.append("gone,Gone,,,,missing.jpg,1")
    (tmp_path / "products.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode())
    from apparel.shop.catalog import CatalogConfig, categorize_catalog

    outputs = {}
    for engine in ("local", "ray"):
        config = CatalogConfig(model_dir=str(photo_run), images_dir=str(shop), min_confidence=0.34,
                               engine=engine)
        report = categorize_catalog(tmp_path / "products.csv", tmp_path / engine / "out.csv", config)
        assert report.predicted == 13 and report.failed == 1
        outputs[engine] = [(tmp_path / engine / name).read_bytes() for name in ("out.csv", "out.review.csv")]
    assert outputs["ray"] == outputs["local"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_ports() -> list[str]:
    """Ports of their own for the agents of each node: two nodes on one host must not share them."""
    flags = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port")
    return [item for flag in flags for item in (flag, str(free_port()))]


# The two-node cluster's address. Loopback, but not 127.0.0.1: Ray turns "127.0.0.1" into the
# machine's network address, so that other machines can reach the node, unless told it is a
# one-machine cluster (LOOPBACK_ONLY), which refuses a second node. 127.0.0.2 it takes as it is.
CLUSTER_HOST = "127.0.0.2"


def test_two_node_cluster_through_ray_address(shop, photo_run, local_output):
    """A head and a second node on loopback, one CPU each: one model replica fits on each, so
    both nodes work; joined with --ray-address from the command line."""
    port = free_port()
    address = f"{CLUSTER_HOST}:{port}"
    # Token authentication, as Ray sets up by default: the nodes and the client share ~/.ray/auth_token.
    environment = {key: value for key, value in os.environ.items() if key not in LOOPBACK_ONLY}
    environment["RAY_AUTH_MODE"] = "token"
    # Nothing runs on the nodes when they are stopped: no need for Ray's 30 s of draining.
    environment["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "2"
    ray_cli = str(VENV_BIN / "ray")
    common = ["--block", "--node-ip-address", CLUSTER_HOST, "--num-cpus", "1", "--object-store-memory",
              str(OBJECT_STORE), "--disable-usage-stats"]
    nodes = [subprocess.Popen([ray_cli, "start", "--head", "--port", str(port), "--include-dashboard", "false",
                               *common, *node_ports()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, env=environment)]
    try:
        # Started at once: the second node waits for the head's GCS by itself.
        nodes.append(subprocess.Popen([ray_cli, "start", "--address", address, *common, *node_ports()],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                      env=environment))
        wait_for_nodes(ray_cli, address, 2, nodes, environment)
        out = shop / "out-cluster"
        command = [str(VENV_BIN / "apparel"), "batch", str(shop / "manifest.csv"), "--out", str(out),
                   "--model-dir", str(photo_run), "--engine", "ray", "--ray-address", address,
                   "--predictors", "2", "--predictor-threads", str(usable_cores())]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=240, env=environment)
        assert finished.returncode == 0, finished.stderr[-2000:]
        assert f"{PHOTOS} classified, {len(BAD_ROWS)} unreadable" in finished.stdout
        assert table(out).equals(table(local_output))
    finally:
        # `ray start --block` stops its node's processes on SIGTERM, after draining; the second
        # node first, while the head can still answer it.
        for node in reversed(nodes):
            node.terminate()
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()


def wait_for_nodes(ray_cli: str, address: str, count: int, nodes: list, environment: dict, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert all(node.poll() is None for node in nodes), "a Ray node exited while starting"
        status = subprocess.run([ray_cli, "status", "--address", address], capture_output=True,
                                text=True, timeout=30, env=environment)
        active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0] if "Active:" in status.stdout else ""
        if active.count("node_") >= count:
            return
        time.sleep(1)
    raise AssertionError(f"the Ray cluster did not reach {count} nodes within {timeout:g} s")


def test_ray_is_imported_only_when_asked_for():
    code = ("import sys, apparel.cli, apparel.batch.run, apparel.batch.engine_local; "
            "sys.exit('ray' in sys.modules or 'pyarrow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_kuberay_rayjob_sample_is_valid():
    import yaml

    path = Path(__file__).resolve().parents[1] / "deploy" / "rayjob.yaml"
    job = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert "apparel batch" in spec["entrypoint"] and "--engine ray" in spec["entrypoint"]
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    workers = cluster["workerGroupSpecs"][0]
    assert head["image"] == workers["template"]["spec"]["containers"][0]["image"]
    assert workers["replicas"] >= 1 and workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
    for container in (head, workers["template"]["spec"]["containers"][0]):
        assert container["resources"]["limits"]["cpu"] and container["resources"]["limits"]["memory"]


def test_cli_refuses_a_ray_address_without_the_ray_engine(shop, capsys):
    from apparel.cli import main

    assert main(["batch", str(shop / "manifest.csv"), "--out", str(shop / "x"), "--ray-address", "127.0.0.1:1"]) == 2
    assert "joins a Ray cluster; give engine ray with it (--ray-address, --engine)" in capsys.readouterr().err


def test_a_ray_address_where_nothing_answers_is_refused_at_once(shop, capsys, monkeypatch):
    """Ray retries a cluster address that answers nothing for many minutes (over ten, measured),
    saying only its own warnings; the address is tried first, and Ray is never started."""
    import socket
    import types

    from apparel.batch.engine_ray import check_reachable
    from apparel.cli import main

    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(
        is_initialized=lambda: False, init=lambda **options: pytest.fail("Ray was started")))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
            assert main(["batch", str(shop / "manifest.csv"), "--out", str(shop / "x"), "--engine", "ray",
                         "--ray-address", address]) == 2
            printed = capsys.readouterr().err
            assert f"ray_address {address}: no Ray cluster answers there (connection refused); start one with " \
                   "`ray start --head`" in printed and "(--ray-address)" in printed, printed
    with socket.create_server(("127.0.0.1", 0)) as listening:
        check_reachable(f"127.0.0.1:{listening.getsockname()[1]}")  # answers: left to Ray
    check_reachable("auto")  # not an address to try: left to Ray


def test_a_nearly_black_photo_is_predicted_and_coloured_as_the_dark_photo_it_is(photo_run):
    """A batch carries photos as the bytes read; as floats, a photo whose values are all 0 or 1
    would be taken for a 0–1 photo and read 255 times brighter by the model and the colour step."""
    from apparel.batch.config import ModelSettings
    from apparel.batch.predicting import Predict

    dark = np.zeros((2, 32, 32, 3), np.uint8)
    dark[:, 8:24, 8:24] = 1
    batch = {"row": np.array([0, 1]), "pixels": dark, "error": np.array(["", ""], dtype=object)}
    for slots in (None, 4):  # packed, as a catalog predicts; at fixed places, as a batch does
        predict = Predict(ModelSettings(str(photo_run), colour=True), slots=slots)
        answer = predict(batch)
        expected = predict.predictor.predict_proba(dark)
        brightened = predict.predictor.predict_proba(dark.astype(np.float32) * 255)
        assert np.allclose(answer["probabilities"], expected, atol=1e-6)
        assert not np.allclose(answer["probabilities"], brightened, atol=1e-6)
        assert {json.loads(colour)["name"] for colour in answer["colour"]} == {"Black"}
