"""The wheel works on its own: `make wheel`'s build, installed into a fresh virtual environment,
classifies a photo with the shipped store model (the default for photos) from a folder outside the checkout.

The fresh environment borrows this one's installed dependencies (TensorFlow is hundreds of MB) by a
``.pth`` line naming their folder; a plain path line runs none of that folder's own ``.pth`` files,
so the editable install of the checkout cannot shadow the wheel's ``apparel``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from apparel.artifacts import MODEL_FILE, SHIPPED_MODELS_DIR, shipped_model_dir

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(out: Path) -> Path:
    """`make wheel`'s command, on a copy of the sources: the checkout's build/ is neither used (setuptools
    ships the stale files it finds there) nor written."""
    source = out / "source"
    shutil.copytree(ROOT / "apparel", source / "apparel", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    # "./": a bare folder name would be looked up on the package index as a project's name.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(out / "dist"), f"./{source.name}"], cwd=out, check=True)
    (wheel,) = (out / "dist").glob("apparel-*.whl")
    return wheel


def fresh_environment(folder: Path, wheel: Path) -> Path:
    """A virtual environment holding the wheel, and this environment's dependencies on its path;
    its ``bin`` folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    # The wheel before the dependencies' folder is on the path, so pip sees no apparel installed already.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True)
    site_packages = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (Path(site_packages) / "project-dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    return folder / "bin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """The wheel and the ``bin`` folder of a fresh environment it is installed in."""
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work)
    return wheel, fresh_environment(work / "venv", wheel)


def outside_environment() -> dict[str, str]:
    """This process's environment less what would point the command back at the checkout or at a model."""
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "APPAREL_MODEL_DIR")}


def test_the_wheel_holds_the_shipped_models_and_data_files(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {path.relative_to(ROOT).as_posix() for path in SHIPPED_MODELS_DIR.rglob("*") if path.is_file()}
    assert {f"apparel/shipped_models/{name}/{MODEL_FILE}" for name in ("default", "photos", "store")} <= shipped
    assert "apparel/shipped_models/store/categories.json" in shipped  # the default photo model's categories
    assert shipped <= names
    assert {"apparel/shop/taxonomy.csv", "apparel/serve/static/index.html", "apparel/attributes/colour_names.npz"} <= names


def test_the_installed_package_is_the_wheels(installed, tmp_path):
    _, bin_dir = installed
    located = subprocess.run([str(bin_dir / "python"), "-c", "import apparel; print(apparel.__file__)"], cwd=tmp_path,
                             env=outside_environment(), capture_output=True, text=True, check=True).stdout.strip()
    assert Path(located).is_relative_to(bin_dir.parent)


def test_the_installed_command_classifies_a_photo_outside_the_checkout(installed, tmp_path):
    from PIL import Image, ImageDraw

    _, bin_dir = installed
    photo = Image.new("RGB", (240, 320), "white")
    ImageDraw.Draw(photo).rectangle((60, 40, 180, 280), fill=(30, 60, 150))  # a dark garment on white
    photo.save(tmp_path / "garment.jpg", quality=90)
    result = subprocess.run([str(bin_dir / "apparel"), "predict", "garment.jpg", "--json"], cwd=tmp_path,
                            env=outside_environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (outcome,) = json.loads(result.stdout)
    # Photos go to the store model, whose categories.json came with the wheel: a category or a reason.
    store_classes = json.loads((shipped_model_dir("store") / "config.json").read_text())["input"]["class_names"]
    assert outcome["top_k"][0]["label"] in store_classes
    category = outcome["category"]
    assert set(category) == {"id", "gid", "path", "confidence", "reason"}
    if category["id"] is None:
        assert category["reason"] in ("uncertain", "outside the vertical") and category["path"] is None
    else:
        assert category["reason"] is None and category["gid"] == f"gid://shopify/TaxonomyCategory/{category['id']}"
