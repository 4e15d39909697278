"""The desk without a browser: decisions entering the catalog library, the job store on disk, a
job run in rounds, resumed after a stop, and its download equal to the library's own output."""

from __future__ import annotations

import csv
import io
import time

import numpy as np
import pytest

from apparel.cli import main
from apparel.desk.jobs import DONE, FAILED, JobStore, UploadedCatalog, round_bounds
from apparel.desk.runner import Stopped
from apparel.errors import ParameterError, SourceError
from apparel.shop.catalog import categorize_catalog
from apparel.shop.decisions import KEEP, read_decisions, write_decisions
from apparel.shop.splice import parse_records
from desk_shop import (HEADER, SETTINGS, ColourPredictor, FailingOnce, ShirtPredictor, colour_desk, sleeved_model_dir,
                       stub_model_dir, write_store)

DRESSES = "Apparel & Accessories > Clothing > Dresses"
TSHIRTS = "Apparel & Accessories > Clothing > Clothing Tops > T-Shirts"


@pytest.fixture
def store(tmp_path):
    csv_path, images = write_store(tmp_path / "shop", 12)
    return csv_path, images, stub_model_dir(tmp_path / "model")


def rows_by_handle(path):
    text = path.read_bytes().decode("utf-8-sig")
    found = {}
    for row in csv.DictReader(io.StringIO(text, newline="")):
        if row["Title"]:
            found[row["Handle"]] = row
    return found


def test_decisions_win_over_the_model_and_keep_leaves_a_product_as_it_is(store, tmp_path):
    csv_path, images, model_dir = store
    settings = SETTINGS.replace(images_dir=str(images), model_dir=str(model_dir))
    plain = categorize_catalog(csv_path, tmp_path / "plain.csv", settings, ColourPredictor())
    # product-0000 is red (a dress), 0001 blue (only Clothing is sure), 0002 green (uncertain).
    decisions = {"product-0000": TSHIRTS, "product-0001": KEEP, "product-0002": "aa-1-4", "product-0011": TSHIRTS}
    report = categorize_catalog(csv_path, tmp_path / "decided.csv", settings, ColourPredictor(), decisions=decisions)
    before, after = rows_by_handle(tmp_path / "plain.csv"), rows_by_handle(tmp_path / "decided.csv")
    original = rows_by_handle(csv_path)
    assert before["product-0000"]["Product Category"] == DRESSES
    assert after["product-0000"]["Product Category"] == TSHIRTS and after["product-0000"]["Type"] == "T-Shirts"
    assert after["product-0001"] == original["product-0001"] != before["product-0001"]
    assert after["product-0002"]["Product Category"] == DRESSES  # aa-1-4, by id
    assert after["product-0011"]["Product Category"] == TSHIRTS  # no photo at all: the merchant's word is enough
    assert report.decided == 4 and plain.decided == 0
    assert report.uncertain == plain.uncertain - 1 and report.no_image == 0
    reviewed = {row["handle"] for row in csv.DictReader(open(report.review, encoding="utf-8"))}
    assert not reviewed & set(decisions)
    outcome = {item.handle: item for item in report.outcomes}
    assert outcome["product-0000"].status == "decided" and outcome["product-0000"].suggested == DRESSES
    assert outcome["product-0001"].decision == KEEP and outcome["product-0001"].category is None
    # Every byte but the decided products' changed cells is the undecided run's.
    assert [line for line in (tmp_path / "plain.csv").read_bytes().splitlines()
            if b"product-0000" not in line and b"product-0001," not in line and b"product-0002" not in line
            and b"product-0011" not in line] == \
           [line for line in (tmp_path / "decided.csv").read_bytes().splitlines()
            if b"product-0000" not in line and b"product-0001," not in line and b"product-0002" not in line
            and b"product-0011" not in line]


def test_a_decisions_file_round_trips_and_names_a_bad_row(tmp_path):
    path = tmp_path / "decisions.csv"
    write_decisions(path, {"b": TSHIRTS, "a": KEEP})
    assert read_decisions(path) == {"a": KEEP, "b": "aa-1-13-8"}
    path.write_text("handle,category\nshirt,Apparel & Accessories > Clothing > Tshirtz\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"row 2 \(shirt\): .*not a category.*closest"):
        read_decisions(path)
    path.write_text("sku,category\n", encoding="utf-8")
    with pytest.raises(SourceError, match="header must be handle,category"):
        read_decisions(path)
    # A handle decided twice alike is one decision; decided two ways, which one is meant is asked.
    path.write_text("handle,category\na,keep\nb,aa-1-13-8\na,KEEP\nb,aa-1-4\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"row 5 \(b\) decides it otherwise than row 3; keep the row you mean"):
        read_decisions(path)
    path.write_text("handle,category\na,keep\na,keep\n", encoding="utf-8")
    assert read_decisions(path) == {"a": KEEP}


def test_the_command_takes_the_same_decisions(store, tmp_path, photo_run, capsys):
    """`apparel catalog --decisions` is the library with the same decisions: the same bytes."""
    from apparel.inference.prediction import Predictor

    csv_path, images, _ = store
    decisions = tmp_path / "decisions.csv"
    # A handle of no product here (a typo) is said, not silently dropped.
    write_decisions(decisions, {"product-0003": TSHIRTS, "product-0004": KEEP, "prodcut-0005": KEEP})
    settings = SETTINGS.replace(images_dir=str(images), model_dir=str(photo_run))
    report = categorize_catalog(csv_path, tmp_path / "library.csv", settings, Predictor.from_dir(photo_run),
                                decisions=read_decisions(decisions))
    assert report.strangers == ("prodcut-0005",)
    assert main(["catalog", str(csv_path), "--out", str(tmp_path / "cli.csv"), "--model-dir", str(photo_run),
                 "--images-dir", str(images), "--min-confidence", "0.6", "--decisions", str(decisions)]) == 0
    said = capsys.readouterr()
    assert "2 products as decided" in said.out
    assert f"warning: 1 handles of {decisions} name no product of {csv_path} (prodcut-0005)" in said.err
    assert (tmp_path / "cli.csv").read_bytes() == (tmp_path / "library.csv").read_bytes()


def test_rounds_cover_every_row_once_in_file_order(store):
    csv_path, _, _ = store
    catalog = UploadedCatalog.parse(csv_path.read_bytes(), csv_path.name)
    bounds = round_bounds(len(catalog.products))
    assert bounds[0][0] == 0 and bounds[-1][1] == len(catalog.products)
    assert all(end == start for (_, end), (start, _) in zip(bounds, bounds[1:]))
    pieces = [catalog.round_csv(0, 5), catalog.round_csv(5, 12)]
    header = csv_path.read_bytes().decode("utf-8-sig").split("\r\n", 1)[0]
    rows = [record for piece in pieces for record in parse_records(piece.decode("utf-8-sig"))[1:]]
    assert all(piece.decode("utf-8-sig").startswith(header + "\r\n") for piece in pieces)
    assert len(rows) == len(parse_records(csv_path.read_text(encoding="utf-8-sig"))) - 1
    with pytest.raises(SourceError, match="no Handle"):
        UploadedCatalog.parse(b"name,price\nshirt,3\n", "prices.csv")


def test_a_job_runs_in_rounds_and_its_download_is_the_librarys_output(store, tmp_path):
    csv_path, images, model_dir = store
    desk = colour_desk(tmp_path / "jobs", images, model_dir, ColourPredictor())
    job = desk.store.create("products.csv", csv_path.read_bytes())
    assert desk.progress(job)["done"] == 0 and job.state()["state"] == "queued"
    desk.run(job)
    assert desk.progress(job)["done"] == 12 and job.state()["state"] == DONE
    outcomes = job.outcomes()
    assert outcomes["product-0000"]["suggested"] == DRESSES
    assert outcomes["product-0001"]["suggested"] == "Apparel & Accessories > Clothing"  # the parent
    assert outcomes["product-0001"]["likeliest"] == TSHIRTS  # the leaf it leaned to
    assert outcomes["product-0002"]["status"] == "uncertain" and outcomes["product-0011"]["status"] == "no image"
    job.decide(["product-0002", "product-0005"], TSHIRTS)
    job.decide(["product-0003"], KEEP)
    job.decide(["product-0005"], None)  # given back to the model
    assert job.decisions() == {"product-0002": "aa-1-13-8", "product-0003": KEEP}
    with pytest.raises(ValueError, match="unknown: nobody"):
        job.decide(["nobody"], KEEP)
    with pytest.raises(ValueError, match=r"unknown: stranger-0, .*stranger-19 and 9,980 more$") as many:
        job.decide([f"stranger-{number}" for number in range(10_000)], KEEP)  # the error names a few, not all
    assert len(str(many.value)) < 1000 and job.decisions() == {"product-0002": "aa-1-13-8", "product-0003": KEEP}
    download = desk.download(job)
    expected = categorize_catalog(csv_path, tmp_path / "expected.csv", SETTINGS.replace(
        images_dir=str(images), model_dir=str(model_dir)), ColourPredictor(), decisions=job.decisions())
    assert download.categorized == (tmp_path / "expected.csv").read_bytes()
    assert download.review == open(expected.review, "rb").read()


def test_the_table_shows_each_photo_s_colour_and_the_download_writes_it(store, tmp_path):
    from apparel.desk.jobs import JobStore
    from apparel.desk.runner import Desk
    from apparel.serve.desk import product_table

    csv_path, images, model_dir = store
    settings = SETTINGS.replace(images_dir=str(images), colour=True)
    desk = Desk(JobStore(tmp_path / "jobs"), settings, lambda: (model_dir, ColourPredictor()))
    job = desk.store.create("products.csv", csv_path.read_bytes())
    desk.run(job)
    job.decide(["product-0002"], TSHIRTS)
    rows = {row["handle"]: row for row in product_table(job, desk.progress(job))["products"]}
    assert [rows[f"product-{n:04d}"]["colour"] for n in range(4)] == ["Red", "Blue", "Green", "Red"]
    assert rows["product-0011"]["colour"] is None  # no photo
    download = desk.download(job)
    categorize_catalog(csv_path, tmp_path / "expected.csv", settings.replace(model_dir=str(model_dir)),
                       ColourPredictor(), decisions=job.decisions())
    assert download.categorized == (tmp_path / "expected.csv").read_bytes()
    written = rows_by_handle(tmp_path / "expected.csv")
    assert "color:green" in written["product-0002"]["Tags"]  # decided T-Shirts: the photo's colour as a tag


def test_the_table_shows_each_photo_s_sleeve_length_and_the_download_writes_it(store, tmp_path):
    from apparel.desk.jobs import JobStore
    from apparel.desk.runner import Desk
    from apparel.serve.desk import product_table

    csv_path, images, model_dir = store
    sleeved = sleeved_model_dir(tmp_path / "sleeved-model")
    settings = SETTINGS.replace(images_dir=str(images), sleeve_length=True)
    desk = Desk(JobStore(tmp_path / "jobs"), settings, lambda: (sleeved, ShirtPredictor()))
    job = desk.store.create("products.csv", csv_path.read_bytes())
    desk.run(job)
    rows = {row["handle"]: row for row in product_table(job, desk.progress(job))["products"]}
    assert rows["product-0000"]["sleeve"] == "Short" and rows["product-0011"]["sleeve"] is None  # no photo
    download = desk.download(job)
    categorize_catalog(csv_path, tmp_path / "expected.csv", settings.replace(model_dir=str(sleeved)),
                       ShirtPredictor())
    assert download.categorized == (tmp_path / "expected.csv").read_bytes()
    assert "sleeve-length:short" in rows_by_handle(tmp_path / "expected.csv")["product-0000"]["Tags"]


def test_a_stopped_job_resumes_from_its_cache_with_every_decision(store, tmp_path):
    csv_path, images, model_dir = store
    first_predictor = ColourPredictor()
    desk = colour_desk(tmp_path / "jobs", images, model_dir, first_predictor)
    job = desk.store.create("products.csv", csv_path.read_bytes())
    job.decide(["product-0007"], KEEP)
    desk._stop.set()  # as a server stopping in the first round's first batch
    with pytest.raises(Stopped):
        desk.run(job)
    assert job.state()["state"] == "running" and job.finished_rounds() == 0
    again = ColourPredictor()
    restarted = colour_desk(tmp_path / "jobs", images, model_dir, again)
    job = restarted.store.get(job.id)
    run_to_the_end(restarted, job)
    assert job.state()["state"] == DONE and job.decisions() == {"product-0007": KEEP}
    assert len(job.outcomes()) == 12


def test_one_desk_stopped_mid_job_and_started_again_finishes_it(store, tmp_path):
    csv_path, images, model_dir = store
    desk = colour_desk(tmp_path / "jobs", images, model_dir, ColourPredictor(delay=0.2))
    desk.start()
    job = desk.submit("products.csv", csv_path.read_bytes())
    desk.stop()  # in the first round: the stop's wake-up is left in the queue
    assert job.state()["state"] != DONE
    run_to_the_end(desk, job)
    assert job.state()["state"] == DONE and len(job.outcomes()) == 12


def run_to_the_end(desk, job, seconds: float = 10, end: str = DONE) -> None:
    """Start ``desk``'s thread and stop it once ``job`` is ``end`` (done), or after ``seconds``."""
    desk.start()
    try:
        for _ in range(int(seconds / 0.05)):
            if job.state()["state"] == end:
                break
            time.sleep(0.05)
    finally:
        desk.stop()


def test_a_failed_job_is_tried_again_and_keeps_the_rounds_it_finished(store, tmp_path):
    csv_path, images, model_dir = store
    predictor = FailingOnce(fail_at=2)  # the first round (10 products, one batch) finishes, the second fails
    desk = colour_desk(tmp_path / "jobs", images, model_dir, predictor)
    job = desk.submit("products.csv", csv_path.read_bytes())
    run_to_the_end(desk, job, end=FAILED)
    assert job.state()["state"] == FAILED
    # A bug's or the disk's own words stay in the server's log: they may hold its paths.
    assert job.state()["error"] == "the server failed: RuntimeError; its log has the details; retry the job once it is mended"
    assert job.finished_rounds() == 1 and predictor.calls == 2
    from apparel.batch.writing import full_disk_named
    from apparel.desk.runner import failure_message

    try:
        with full_disk_named(job.folder / "work" / "categorized.csv"):
            raise OSError(28, "No space left on device")
    except OSError as full:
        said = failure_message(full)
    assert said.startswith("the server failed: No space left on device;") and str(job.folder) not in said
    desk.retry(job)
    assert job.state()["state"] == "queued" and job.state()["error"] is None
    run_to_the_end(desk, job)
    assert job.state()["state"] == DONE and len(job.outcomes()) == 12
    assert predictor.calls == 3, "the finished round was not classified again"
    with pytest.raises(ParameterError, match=f"job {job.id} is done; only a failed job is tried again"):
        desk.retry(job)


def test_the_desk_keeps_at_most_its_jobs_and_deletes_only_finished_ones(store, tmp_path):
    from apparel.desk.jobs import JobStore
    from apparel.desk.runner import Desk

    csv_path, images, model_dir = store
    desk = Desk(JobStore(tmp_path / "jobs", max_jobs=2), SETTINGS.replace(images_dir=str(images)),
                lambda: (model_dir, ColourPredictor()))
    first = desk.store.create("a.csv", csv_path.read_bytes())
    desk.store.create("b.csv", csv_path.read_bytes())
    with pytest.raises(ValueError, match="holds 2 jobs, its most; delete finished ones"):
        desk.store.create("c.csv", csv_path.read_bytes())
    with pytest.raises(ValueError, match="is queued; delete it once it is done"):
        desk.store.delete(first)
    desk.run(first)
    desk.store.delete(first)
    assert not first.folder.exists() and len(desk.store.jobs()) == 1
    with pytest.raises(ValueError, match="not a job of this desk"):
        desk.store.get(first.id)
    desk.store.create("c.csv", csv_path.read_bytes())  # room again


def test_uploads_sent_together_make_no_more_jobs_than_the_desk_keeps(store, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from apparel.desk.jobs import JobStore

    csv_path, _, _ = store
    jobs, content = JobStore(tmp_path / "jobs", max_jobs=3), csv_path.read_bytes()

    def upload(number: int) -> str:
        try:
            return jobs.create(f"{number}.csv", content).id
        except ValueError as refused:
            return str(refused)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(upload, range(10)))
    assert len(jobs.jobs()) == 3 and len(list((tmp_path / "jobs").iterdir())) == 3
    assert sum("holds 3 jobs, its most" in answer for answer in answers) == 7


def test_a_job_keeps_its_upload_s_own_name_and_nothing_a_client_hid_in_it():
    from apparel.desk.jobs import upload_name

    assert upload_name("shop/products.csv") == upload_name("C:\\shop\\products.csv") == "products.csv"
    assert upload_name("a\x00b\n.csv") == "ab.csv"
    for nothing in (None, "", ".", "..", "shop/", "\x00"):
        assert upload_name(nothing) == "products.csv"


def test_an_upload_that_is_no_shopify_export_is_refused_with_the_reason(tmp_path):
    with pytest.raises(SourceError, match="prices.csv: no Handle"):
        JobStore(tmp_path / "jobs").create("prices.csv", b"name,price\nshirt,3\n")
    with pytest.raises(SourceError, match="not UTF-8"):
        JobStore(tmp_path / "jobs").create("latin.csv", "Handle,Title\nb\xe9ret,B\xe9ret\n".encode("latin-1"))
    # The desk writes the colour: two colour columns are refused at upload, not when the job runs.
    twice = ("Handle,Title,Image Src,Tags,Color (product.metafields.shopify.color-pattern),"
             "Kolor (product.metafields.shopify.color-pattern)\nshirt,Shirt,a.jpg,,,\n")
    with pytest.raises(SourceError, match=r"shop.csv: 'Color .*' \(column 5\) and 'Kolor .*' \(column 6\) hold the same"):
        JobStore(tmp_path / "jobs").create("shop.csv", twice.encode())


def test_a_stored_upload_that_no_longer_reads_fails_its_job_and_breaks_no_answer(store, tmp_path, photo_run):
    """A job taken by an earlier version, whose rules were looser (two Tags columns were read as
    the first): the job fails, saying why by the upload's name, and the list, the table, a
    thumbnail and the download answer 4xx or list it, never 500 (the list of every job did)."""
    from fastapi.testclient import TestClient

    from apparel.inference.prediction import Predictor
    from apparel.serve.app import create_app

    csv_path, images, model_dir = store
    desk = colour_desk(tmp_path / "jobs", images, model_dir, ColourPredictor())
    good = desk.store.create("products.csv", csv_path.read_bytes())
    desk.run(good)
    old = desk.store.create("old.csv", csv_path.read_bytes())
    desk.run(old)
    lines = old.upload.read_bytes().split(b"\r\n")
    old.upload.write_bytes(b"\r\n".join([lines[0] + b",Tags"] + [line + b"," for line in lines[1:] if line]) + b"\r\n")
    desk.store = type(desk.store)(tmp_path / "jobs")  # the server started again: nothing parsed yet
    app = create_app(Predictor.from_dir(photo_run), desk=desk)
    reason = "old.csv: 'Tags' (column 7) and 'Tags' (column 11) hold the same field"
    with TestClient(app) as client:
        # The list parses no upload (every one, on each poll, was seconds and memory for good): it
        # lists the job as its record has it, until the job is opened.
        assert client.get("/desk/api/jobs").status_code == 200
        for path in ("products", "thumbnails/0", "categorized.csv"):
            answer = client.get(f"/desk/api/jobs/{old.id}/{path}")
            assert answer.status_code == 409 and reason in answer.json()["error"]
            assert str(tmp_path) not in answer.json()["error"]  # named by the upload's name, not the server's path
        listed = client.get("/desk/api/jobs")
        assert listed.status_code == 200
        states = {job["id"]: job for job in listed.json()["jobs"]}
        assert states[good.id]["state"] == "done" and states[old.id]["state"] == "failed"
        assert states[old.id]["error"].startswith(reason) and "upload the file again" in states[old.id]["error"]
        assert client.get(f"/desk/api/jobs/{good.id}/products").status_code == 200


def test_the_desk_api_has_the_services_guards_and_says_what_is_wrong(store, tmp_path, photo_run):
    from fastapi.testclient import TestClient

    from apparel.inference.prediction import Predictor
    from apparel.serve.app import create_app

    csv_path, images, model_dir = store
    (images / "../secret.jpg").write_bytes((images / "photos" / "product-0000.jpg").read_bytes())
    desk = colour_desk(tmp_path / "jobs", images, model_dir, ColourPredictor(delay=0.2))
    app = create_app(Predictor.from_dir(photo_run), api_key="s3cret-key", desk=desk)
    key = {"X-API-Key": "s3cret-key"}
    upload = {"csv": ("products.csv", csv_path.read_bytes(), "text/csv")}
    with TestClient(app) as client:
        assert client.get("/desk/api/jobs").status_code == 401
        page = client.get("/desk", headers={"Accept": "text/html"})
        assert page.status_code == 401 and "form" in page.text  # the login form, then the session cookie
        assert client.post("/desk/api/jobs", files=upload, headers={**key, "Origin": "http://evil.example"}
                           ).status_code == 403
        refused = client.post("/desk/api/jobs", files={"csv": ("prices.csv", b"name,price\nshirt,3\n")}, headers=key)
        assert refused.status_code == 422 and "prices.csv: no Handle" in refused.json()["error"]
        created = client.post("/desk/api/jobs", files=upload, headers=key)
        assert created.status_code == 201 and created.json()["products"] == 12
        job = created.json()["id"]
        early = client.get(f"/desk/api/jobs/{job}/categorized.csv", headers=key)
        assert early.status_code == 409 and "download it once every product is classified" in early.json()["error"]
        # A file named in any script downloads under its name (headers are Latin-1: RFC 6266's filename*).
        named = client.post("/desk/api/jobs", files={"csv": ("été_日本.csv", csv_path.read_bytes(), "text/csv")},
                            headers=key).json()["id"]
        download = client.get(f"/desk/api/jobs/{named}/decisions.csv", headers=key)
        assert download.status_code == 200
        assert "filename*=UTF-8''%C3%A9t%C3%A9_%E6%97%A5%E6%9C%AC.decisions.csv" in download.headers["content-disposition"]
        bad = client.post(f"/desk/api/jobs/{job}/decisions", json={"handles": ["product-0001"], "category": "Tshirtz"},
                          headers=key)
        assert bad.status_code == 422 and "not a category" in bad.json()["error"]
        no_category = client.post(f"/desk/api/jobs/{job}/decisions", json={"handles": ["product-0001"]}, headers=key)
        assert no_category.status_code == 400 and '"category"' in no_category.json()["error"]
        empty = client.post(f"/desk/api/jobs/{job}/decisions", content=b"", headers={
            **key, "Content-Type": "application/json"})
        assert empty.status_code == 400 and '{"handles": [' in empty.json()["error"]  # this route's body, not /predict's
        assert client.get("/desk/api/jobs/0123456789abcdef", headers=key).status_code == 404
        # An unknown job is a 404 whatever is asked of it, not the 409 of a job that cannot do it yet.
        assert client.delete("/desk/api/jobs/0123456789abcdef", headers=key).status_code == 404
        assert client.post("/desk/api/jobs/0123456789abcdef/retry", headers=key).status_code == 404
        handless = client.post("/desk/api/jobs", files={"csv": ("blank.csv", b"Handle,Title,Image Src,Type\n,T,x.jpg,\n")},
                               headers=key)
        assert handless.status_code == 422 and "no product rows with a handle" in handless.json()["error"]
        # Queued behind the first job (0.2 s a batch): not done, so not deleted.
        assert client.delete(f"/desk/api/jobs/{named}").status_code == 401
        assert client.delete(f"/desk/api/jobs/{named}", headers={**key, "Origin": "http://evil.example"}
                             ).status_code == 403
        busy = client.delete(f"/desk/api/jobs/{named}", headers=key)
        assert busy.status_code == 409 and "delete it once it is done" in busy.json()["error"]
        not_failed = client.post(f"/desk/api/jobs/{named}/retry", headers=key)
        assert not_failed.status_code == 409 and "only a failed job is tried again" in not_failed.json()["error"]
        assert client.get("/desk/api/jobs/..%2F..%2Fetc", headers=key).status_code == 404
        hits = client.get("/desk/api/taxonomy", params={"q": "tee"}, headers=key).json()["categories"]
        assert hits[0]["path"] == TSHIRTS
        thumbnail = client.get(f"/desk/api/jobs/{job}/thumbnails/0", headers=key)
        assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
        assert client.get(f"/desk/api/jobs/{job}/thumbnails/11", headers=key).status_code == 404  # no photo
    upload = {"csv": ("sneaky.csv", b"Handle,Title,Type,Image Src\nsneaky,Sneaky,,../secret.jpg\n", "text/csv")}
    with TestClient(create_app(Predictor.from_dir(photo_run), desk=desk)) as client:
        job = client.post("/desk/api/jobs", files=upload).json()["id"]
        refused = client.get(f"/desk/api/jobs/{job}/thumbnails/0")
        assert refused.status_code == 404 and "not a file inside the server's images folder" in refused.json()["error"]
        assert str(desk.images_dir()) not in refused.json()["error"]  # no server path in the answer
    upload = {"csv": ("gone.csv", b"Handle,Title,Type,Image Src\ngone,Gone,,photos/gone.jpg\n", "text/csv")}
    with TestClient(create_app(Predictor.from_dir(photo_run), desk=desk)) as client:
        job = client.post("/desk/api/jobs", files=upload).json()["id"]
        missing = client.get(f"/desk/api/jobs/{job}/thumbnails/0")
        # Named as the CSV names it: the server's own folders are not the client's business.
        assert missing.status_code == 404 and missing.json()["error"] == "'photos/gone.jpg': no such file in the images folder"
        assert str(images) not in missing.text


def test_a_desk_images_folder_that_is_not_one_stops_the_start(tmp_path):
    """serve --images-dir nosuchdir started, and every local photo of every job was "file not found"."""
    from apparel.serve.config import ServiceConfig
    from apparel.serve.desk import served_desk

    config = ServiceConfig(desk_jobs=str(tmp_path / "jobs"), images_dir=str(tmp_path / "nosuchdir"))
    with pytest.raises(ParameterError, match="images_dir .*nosuchdir is not a folder; give the folder that holds the"):
        served_desk(registry=None, config=config)
    (tmp_path / "photos").mkdir()
    assert served_desk(None, config.replace(images_dir=str(tmp_path / "photos"))).images_dir() == str(tmp_path / "photos")


def test_a_catalog_of_local_photos_is_refused_at_upload_by_a_desk_that_reads_urls_only(store, tmp_path):
    """Without --images-dir, such a job ended "done" with every product "file not found"."""
    from desk_shop import ColourPredictor
    from apparel.desk.runner import Desk

    csv_path, images, model_dir = store
    content = csv_path.read_bytes()
    desk = Desk(JobStore(tmp_path / "jobs"), SETTINGS, lambda: (model_dir, ColourPredictor()))
    with pytest.raises(SourceError, match="its photos are local files .*this desk reads image URLs only: upload the "
                                          "CSV as Shopify exports it"):
        desk.submit("products.csv", content)
    assert not list((tmp_path / "jobs").glob("*/upload*"))  # nothing was kept
    with_folder = Desk(JobStore(tmp_path / "jobs2"), SETTINGS.replace(images_dir=str(images)),
                       lambda: (model_dir, ColourPredictor()))
    assert with_folder.submit("products.csv", content).id


def test_a_category_the_merchant_filled_is_kept_judged_and_given_only_the_attributes_it_takes(tmp_path):
    """A kept Boots got the T-shirt's sleeve length; a kept T-Shirts was "uncertain" when the model
    was; a kept "Nonsense" was counted categorised; --overwrite put Clothing over T-Shirts."""
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (20, 20), "red").save(images / "t.png")
    kept = {"boots": "Apparel & Accessories > Shoes > Boots", "tee": "aa-1-13-8", "odd": "Nonsense Category",
            "empty": ""}
    lines = [",".join(HEADER)] + [",".join([handle, handle.title(), "", "", category, "", "", "", "t.png", "1"])
                                  for handle, category in kept.items()]
    csv_path = tmp_path / "products.csv"
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = SETTINGS.replace(images_dir=str(images), sleeve_length=True, model_dir=str(
        sleeved_model_dir(tmp_path / "model")))

    report = categorize_catalog(csv_path, tmp_path / "out.csv", settings, ShirtPredictor())  # surely a T-shirt
    rows = rows_by_handle(tmp_path / "out.csv")
    assert [rows[handle]["Product Category"] for handle in kept] == [
        kept["boots"], "aa-1-13-8", "Nonsense Category", "Apparel & Accessories > Clothing > Clothing Tops > T-Shirts"]
    assert "sleeve-length:short" not in rows["boots"]["Tags"]  # Boots take no sleeve length
    assert "sleeve-length:short" in rows["tee"]["Tags"] and "sleeve-length:short" in rows["empty"]["Tags"]
    assert (report.categorized, report.not_shopify) == (3, 1)
    outcomes = {outcome.handle: outcome for outcome in report.outcomes}  # what the desk's table shows
    assert (outcomes["boots"].category, outcomes["boots"].sleeve) == (kept["boots"], None)
    assert (outcomes["odd"].status, outcomes["odd"].category) == ("not Shopify's category", None)
    assert outcomes["tee"].sleeve == "Short"
    review = list(csv.DictReader(open(tmp_path / "out.review.csv", encoding="utf-8")))
    assert [(row["handle"], row["status"]) for row in review] == [("odd", "not Shopify's category")]
    assert "'Nonsense Category', which is not a category of Shopify's product taxonomy" in review[0]["error"]

    unsure = categorize_catalog(csv_path, tmp_path / "unsure.csv", settings.replace(min_confidence=0.99),
                                ShirtPredictor())
    review = list(csv.DictReader(open(tmp_path / "unsure.review.csv", encoding="utf-8")))
    assert sorted((row["handle"], row["status"]) for row in review) == [("empty", "uncertain"),
                                                                       ("odd", "not Shopify's category")]
    assert (unsure.categorized, unsure.uncertain) == (2, 1)  # the merchant's Boots and T-Shirts are categories
    outcomes = {outcome.handle: outcome for outcome in unsure.outcomes}
    assert (outcomes["tee"].status, outcomes["tee"].category) == ("categorized", kept["boots"].replace(
        "Shoes > Boots", "Clothing > Clothing Tops > T-Shirts"))

    class Unsure(ShirtPredictor):  # Clothing sure (a dress or a T-shirt), neither leaf
        def predict_proba(self, images):
            return np.tile([0.4, 0.05, 0.55], (len(images), 1))

    categorize_catalog(csv_path, tmp_path / "over.csv", settings.replace(overwrite=True), Unsure())
    rows = rows_by_handle(tmp_path / "over.csv")
    assert rows["tee"]["Product Category"] == "aa-1-13-8"  # below the Clothing chosen: kept
    assert rows["boots"]["Product Category"] == rows["odd"]["Product Category"] == "Apparel & Accessories > Clothing"


def test_the_table_loads_an_image_url_only_once_the_server_has_read_it():
    """A waiting row showed the upload's own URL, so the merchant's browser fetched what the server
    refuses (http://192.168.1.1/…, its own network); one the server could not read, likewise."""
    from apparel.serve.desk import image_thumbnail

    local = "/desk/api/jobs/j/thumbnails/0"
    url = "http://192.168.77.100/router-admin?reboot=1"
    assert image_thumbnail(url, None, local) is None  # waiting
    assert image_thumbnail(url, {"status": "unreadable image", "label": None}, local) is None
    assert image_thumbnail(url, {"status": "uncertain", "label": "shirt"}, local) == url  # the server read it
    assert image_thumbnail("shop/a.jpg", None, local) == local and image_thumbnail("", None, local) is None


def test_the_table_of_the_rounds_since_a_round_reads_those_rounds_alone(tmp_path, photo_run):
    """The page fetches the whole table once, then the rounds finished since (``from_round``): the
    whole table at each round was quadratic, 40 MB a second on a catalog of 100,000 products."""
    from fastapi.testclient import TestClient

    from apparel.inference.prediction import Predictor
    from apparel.serve.app import create_app

    csv_path, images = write_store(tmp_path / "shop", 60)  # rounds of 10, 40 and 10 products
    desk = colour_desk(tmp_path / "jobs", images, stub_model_dir(tmp_path / "model"), ColourPredictor())
    job = desk.store.create("products.csv", csv_path.read_bytes())
    desk.run(job)
    job.decide(["product-0005", "product-0012"], TSHIRTS)
    job.decide(["product-0055"], KEEP)
    with TestClient(create_app(Predictor.from_dir(photo_run), desk=desk)) as client:
        table = client.get(f"/desk/api/jobs/{job.id}/products").json()
        assert client.get(f"/desk/api/jobs/{job.id}/products", params={"from_round": 0}).json() == table
        later = client.get(f"/desk/api/jobs/{job.id}/products", params={"from_round": 1})
        assert later.status_code == 200 and later.json() == {"job": table["job"], "products": table["products"][10:]}
        assert [row["decision"]["id"] for row in later.json()["products"] if row["decision"]] == ["aa-1-13-8", KEEP]
        assert later.json()["products"][0]["suggested"] == "Apparel & Accessories > Clothing"  # product 10: blue
        nothing_new = client.get(f"/desk/api/jobs/{job.id}/products", params={"from_round": 3})
        assert nothing_new.status_code == 200 and nothing_new.json()["products"] == []
        for bad in ("-1", "4", "x", "1.5", ""):
            refused = client.get(f"/desk/api/jobs/{job.id}/products", params={"from_round": bad})
            assert refused.status_code == 422 and "from_round" in refused.json()["error"], bad
        assert "from 0 to 3 (the rounds finished), got 4" in client.get(
            f"/desk/api/jobs/{job.id}/products", params={"from_round": 4}).json()["error"]
        # The rounds before are not read: the first one's file unreadable, the later rounds still answer.
        job.round_path(0).write_text("not JSON")
        again = client.get(f"/desk/api/jobs/{job.id}/products", params={"from_round": 1})
        assert again.status_code == 200 and again.json() == later.json()
    assert set(job.round_outcomes(1, 3)) == {f"product-{number:04d}" for number in range(10, 60)}
    with pytest.raises(ParameterError, match=r"^from_round must be a round from 0 to 3 .*got True$"):
        job.round_outcomes(True, 3)


def test_a_job_deleted_while_queued_stops_nothing_and_no_upload_is_kept_for_good(store, tmp_path):
    """A queued job that failed and was deleted ended the desk's thread ("… is not a job of this
    desk"): every later upload stayed queued until a restart. And each job's parsed upload stayed
    in memory for good, parsed by the mere listing of the jobs."""
    from apparel.desk.jobs import HeldCatalogs

    csv_path, images, model_dir = store
    desk = colour_desk(tmp_path / "jobs", images, model_dir, ColourPredictor())
    gone = desk.store.create("gone.csv", csv_path.read_bytes())  # queued, as a restart queues it
    gone.update(state=FAILED)
    desk.delete(gone)
    job = desk.store.create("products.csv", csv_path.read_bytes())
    for queued in (gone.id, job.id, None):  # None: the stop's wake-up
        desk._queue.put(queued)
    desk._work()  # the thread's own loop, here
    assert job.state()["state"] == DONE
    # Listing parses no upload: the rounds come from the count job.json keeps.
    others = [desk.store.create(f"{number}.csv", csv_path.read_bytes()) for number in range(5)]
    held = desk.store._held
    assert isinstance(held, HeldCatalogs) and len(held._jobs) == held.most
    for other in others:
        other._catalog = None
    listed = [desk.progress(other) for other in desk.store.jobs()]
    assert all(other._catalog is None for other in others) and len(listed) == 6
    # A download made once serves both files until a decision changes what it is made of.
    first = desk.download(job)
    assert desk.download(job) is first
    job.decide(["product-0002"], TSHIRTS)
    assert desk.download(job) is not first


def test_a_hostile_job_id_is_not_echoed_whole():
    """A 5,000-character id came back whole in the 404."""
    store = JobStore("/nonexistent-desk")
    with pytest.raises(ParameterError) as refused:
        store.get("a" * 5000)
    assert len(str(refused.value)) < 200
