"""The merchant's desk over HTTP: the page ``/desk`` and the JSON it polls and posts to.

Same guards as every route (loopback Host names, Origin, the API key or the page's session
cookie, the body limit); the work is ``apparel.desk``'s: a job per uploaded catalog, decisions
recorded on disk, the download written by ``categorize_catalog`` itself.

    GET  /desk                                   the page
    GET  /desk/api/jobs                          the jobs, newest first
    POST /desk/api/jobs                          multipart ``csv``: a Shopify product export → a job
    GET  /desk/api/jobs/{job}                    its state and progress (polled)
    GET  /desk/api/jobs/{job}/products           every product: suggestion, confidence, reason, decision
         …/products?from_round=K                 only the products of rounds K on (finished since the page's
                                                 table): the whole table at each round was quadratic, some
                                                 40 MB a second for 100,000 products
    POST /desk/api/jobs/{job}/decisions          {"handles": [...], "category": id | "keep" | null}
    GET  /desk/api/jobs/{job}/categorized.csv    the upload with the changed cells (also review.csv, decisions.csv)
    GET  /desk/api/jobs/{job}/thumbnails/{n}     product n's local photo, small
    GET  /desk/api/taxonomy?q=tee                categories matching words ("tee" → T-Shirts first)
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from apparel.desk.jobs import DECISIONS_FILE, Job, UploadedCatalog
from apparel.desk.runner import Desk
from apparel.errors import ParameterError, SourceError
from apparel.images.fetch import is_url
from apparel.images.sources import contained_source
from apparel.serve.config import ServiceConfig
from apparel.serve.handling import read_body, require_content_type
from apparel.serve.payloads import RequestError, json_body, multipart_files
from apparel.shop.decisions import KEEP
from apparel.taxonomy import load_taxonomy

STATIC_DIR = Path(__file__).resolve().parent / "static"
# As the photo page's policy, and product photos from the store's own image hosts (a CSV's URLs).
DESK_POLICY = "default-src 'self'; img-src 'self' data: https: http:; object-src 'none'; base-uri 'none'"
THUMBNAIL_SIZE = (96, 96)
DECISION_BODY = '{"handles": ["<handle>", ...], "category": "<id or path>" | "keep" | null}'


def add_desk_routes(app: FastAPI, desk: Desk | None, config: ServiceConfig) -> None:
    """The desk's page and API; with no ``desk`` (no jobs folder), each API answer says how to get one."""

    @app.get("/desk", include_in_schema=False)
    async def page():
        return FileResponse(STATIC_DIR / "desk.html", headers={"Content-Security-Policy": DESK_POLICY})

    def the_desk() -> Desk:
        if desk is None:
            raise RequestError(503, "the desk has no jobs folder; start the server with --desk-jobs DIR "
                                    "(apparel serve gives it one by default)")
        return desk

    def the_job(job_id: str) -> Job:
        try:
            return the_desk().store.get(job_id)
        except ParameterError as error:
            raise RequestError(404, str(error)) from None

    @app.get("/desk/api/jobs", tags=["desk"], summary="The desk's jobs, newest first")
    async def jobs():
        # On a worker thread: each job's state and rounds are files to read.
        desk_ = the_desk()
        return {"jobs": await run_in_threadpool(lambda: [desk_.progress(job) for job in desk_.store.jobs()])}

    @app.post("/desk/api/jobs", tags=["desk"], status_code=201,
              summary="Upload a Shopify product CSV (multipart field csv): a job that classifies its photos")
    async def upload(request: Request):
        content_type = require_content_type(request, "multipart/form-data")
        body = await read_body(request, config.max_body_bytes)
        files = await run_in_threadpool(multipart_files, body, content_type, max_files=1)
        if not files or not files[0][1]:
            raise RequestError(400, "no CSV in the upload; choose the product CSV Shopify exported")
        name, content = files[0]
        desk_ = the_desk()  # its 503 before the 422 below, which only the upload's content earns
        try:
            job = await run_in_threadpool(desk_.submit, name, content)
        except ValueError as error:
            raise RequestError(422, str(error)) from None
        return JSONResponse(desk_.progress(job), status_code=201)

    @app.get("/desk/api/jobs/{job_id}", tags=["desk"], summary="A job's state and progress")
    async def job_state(job_id: str):
        return await run_in_threadpool(the_desk().progress, the_job(job_id))

    @app.delete("/desk/api/jobs/{job_id}", tags=["desk"], status_code=204,
                summary="Delete a finished job: its upload, decisions, results and photo cache")
    async def delete_job(job_id: str):
        job = the_job(job_id)  # an unknown job is a 404, not the 409 of a job still working
        try:
            await run_in_threadpool(the_desk().delete, job)
        except ValueError as error:
            raise RequestError(409, str(error)) from None
        return Response(status_code=204)

    @app.post("/desk/api/jobs/{job_id}/retry", tags=["desk"], status_code=202,
              summary="Try a failed job again: the rounds it finished are kept")
    async def retry_job(job_id: str):
        job = the_job(job_id)
        try:
            job = await run_in_threadpool(the_desk().retry, job)
        except ValueError as error:
            raise RequestError(409, str(error)) from None
        return JSONResponse(the_desk().progress(job), status_code=202)

    @app.get("/desk/api/jobs/{job_id}/products", tags=["desk"],
             summary="Every product of a job: its photo, the model's suggestion and the merchant's decision; "
                     "with from_round=K, only the products of the rounds finished from round K on")
    async def products(job_id: str, from_round: int = 0):
        job = the_job(job_id)
        progress = the_desk().progress(job)
        # Made into JSON on the worker thread too: a catalog of 100,000 products is some 20 MB of it,
        # which encoded on the event loop held every other request (health checks included) for seconds.
        try:
            return await run_in_threadpool(lambda: JSONResponse(product_table(job, progress, from_round)))
        except SourceError as error:  # an upload that no longer reads: the job failed, saying why
            raise RequestError(409, str(error)) from None
        except ParameterError as error:  # from_round past the rounds finished
            raise RequestError(422, str(error)) from None

    @app.post("/desk/api/jobs/{job_id}/decisions", tags=["desk"],
              summary="Decide products: a category (id, path or GID), keep (leave as it is), or null (the model's)")
    async def decide(job_id: str, request: Request):
        require_content_type(request, "application/json")
        payload = json_body(await read_body(request, config.max_body_bytes), DECISION_BODY)
        if not isinstance(payload, dict) or "category" not in payload or not isinstance(payload.get("handles"), list) \
                or not all(isinstance(handle, str) for handle in payload["handles"]) \
                or not isinstance(payload.get("category"), (str, type(None))):
            raise RequestError(400, f"send {DECISION_BODY}")
        job = the_job(job_id)
        try:
            decisions = await run_in_threadpool(job.decide, payload["handles"], payload["category"])
        except ValueError as error:
            raise RequestError(422, str(error)) from None
        return {"decisions": {handle: decision_view(decisions.get(handle)) for handle in payload["handles"]}}

    @app.get("/desk/api/jobs/{job_id}/{file_name}", tags=["desk"],
             summary="Download categorized.csv (the upload with the changed cells), review.csv or decisions.csv")
    async def download(job_id: str, file_name: str):
        return await run_in_threadpool(download_response, the_desk(), the_job(job_id), file_name)

    @app.get("/desk/api/jobs/{job_id}/thumbnails/{index}", tags=["desk"], summary="A product's local photo, small")
    async def thumbnail(job_id: str, index: int):
        return await run_in_threadpool(thumbnail_response, the_desk(), the_job(job_id), index, config.max_pixels)

    @app.get("/desk/api/taxonomy", tags=["desk"], summary="Categories of Shopify's taxonomy matching words")
    async def taxonomy(q: str = Query(..., min_length=1, max_length=200), limit: int = Query(8, ge=1, le=50)):
        found = load_taxonomy().search(q, limit)
        return {"categories": [{"id": category.id, "name": category.name, "path": category.path}
                               for category in found]}


def download_response(desk: Desk, job: Job, file_name: str) -> Response:
    """One of a job's files: its decisions, or the categorised and review CSVs of a finished job
    (``Desk.download``: ``categorize_catalog`` with the decisions)."""
    stem = Path(job.state()["name"]).stem
    if file_name == DECISIONS_FILE:
        decisions = job.folder / DECISIONS_FILE
        content = decisions.read_bytes() if decisions.is_file() else b"handle,category\r\n"
    elif file_name in ("categorized.csv", "review.csv"):
        try:
            written = desk.download(job)
        except ValueError as error:
            raise RequestError(409, str(error)) from None
        content = written.categorized if file_name == "categorized.csv" else written.review
    else:
        raise RequestError(404, f"no file {file_name!r}; categorized.csv, review.csv and decisions.csv are")
    return Response(content, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": attachment(f"{stem}.{file_name}"), "Cache-Control": "no-store"})


def thumbnail_response(desk: Desk, job: Job, index: int, max_pixels: int) -> Response:
    """Product ``index``'s first photo, small, when it is a local file inside the images folder."""
    try:
        products = job.catalog().products
    except SourceError as error:  # an upload that no longer reads: the job failed, saying why
        raise RequestError(409, str(error)) from None
    if not 0 <= index < len(products) or not products[index].images:
        raise RequestError(404, f"product {index} has no photo")
    photo = products[index].images[0]
    source = contained_source(photo, desk.images_dir())
    if source.path is None:  # a URL, or a path that leads out: said without the server's own folder
        raise RequestError(404, f"{photo!r}: not a file inside the server's images folder")
    if not source.path.is_file():
        raise RequestError(404, f"{photo!r}: no such file in the images folder")
    try:
        content = small_jpeg(source.path, max_pixels)
    except SourceError as error:  # named as the CSV names it, not by the server's own path
        raise RequestError(422, f"{photo!r}: {error.reason}") from None
    return Response(content, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


def decision_view(decision: str | None) -> dict | None:
    """A decision as the page shows it: the id and path of the category, or keep."""
    if decision is None:
        return None
    if decision == KEEP:
        return {"id": KEEP, "path": None}
    return {"id": decision, "path": load_taxonomy().get(decision).path}


def product_table(job: Job, progress: dict, from_round: int = 0) -> dict:
    """Every product in file order with what the model said (once its round is done) and the
    merchant's decision: what the page's table shows. With ``from_round`` K > 0, the products of
    rounds K on alone, read from those rounds' files alone: the page has the earlier ones.

    The rounds are those ``progress`` counts, not any finished since: the page asks for the next
    ones from there, and "done" comes with every row."""
    finished = progress["rounds"]
    catalog = job.catalog()  # first: an upload that no longer reads is its SourceError, whatever was asked
    outcomes, decisions = job.round_outcomes(from_round, finished), job.decisions()
    indices = job.round_products(from_round, finished) if from_round else range(len(catalog.products))
    rows = [product_row(job, catalog, index, outcomes, decisions) for index in indices]
    return {"job": progress, "products": rows}


def product_row(job: Job, catalog: UploadedCatalog, index: int, outcomes: dict[str, dict],
                decisions: dict[str, str]) -> dict:
    """Product ``index`` of ``catalog`` (the job's upload) as a row of the table; "waiting" until
    its outcome is among ``outcomes``."""
    product = catalog.products[index]
    outcome = outcomes.get(product.handle)
    image = (outcome or {}).get("image") or (product.images[0] if product.images else "")
    thumbnail = image_thumbnail(image, outcome, f"/desk/api/jobs/{job.id}/thumbnails/{index}")
    row = {"index": index, "handle": product.handle, "title": catalog.title(product),
           "thumbnail": thumbnail, "status": "waiting", "suggested": None, "likeliest": None,
           "confidence": None, "label": None, "colour": None, "sleeve": None}
    if outcome is not None:
        row.update({key: outcome.get(key) for key in ("status", "suggested", "likeliest", "confidence", "label",
                                                      "colour", "sleeve")})
    row["decision"] = decision_view(decisions.get(product.handle))
    return row


def image_thumbnail(image: str, outcome: dict | None, local: str) -> str | None:
    """What the table's thumbnail loads: a local photo through the server (``local``); an image URL
    only once the server has read it, as a public address, for the model (its outcome has a label).
    A URL straight from the upload would have the merchant's browser fetch what the server refuses
    to, such as an address on their own network."""
    if not image:
        return None
    if not is_url(image):
        return local
    return image if outcome is not None and outcome.get("label") is not None else None


def small_jpeg(path: Path, max_pixels: int) -> bytes:
    """A photo file as a small JPEG for the table (decoded within the service's pixel limit)."""
    from PIL import Image

    from apparel.images.decode import open_image

    image = open_image(path, max_pixels=max_pixels).convert("RGB")
    image.thumbnail(THUMBNAIL_SIZE, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def served_desk(registry, config: ServiceConfig) -> Desk | None:
    """The desk of a service: jobs in ``config.desk_jobs``, run by the default model at the time
    each job runs, local photos from ``config.images_dir``; None without a jobs folder."""
    from apparel.desk.jobs import JobStore
    from apparel.serve.registry import ALIAS
    from apparel.shop.catalog import CatalogConfig, images_folder

    if config.desk_jobs is None:
        return None
    if config.images_dir is not None:  # checked at the start: else every local photo of every job is "not found"
        images_folder(config.images_dir)

    def model():
        predictor = registry.resolve(ALIAS).predictor
        if predictor.model_dir is None:
            raise ValueError("the default model has no run directory, which names the desk's image cache")
        return predictor.model_dir, predictor

    # The colour and the sleeve length too: the table shows them and the download writes them, as
    # `apparel catalog --colour --sleeve-length` does.
    settings = CatalogConfig(images_dir=config.images_dir, mapping=config.taxonomy, colour=True, sleeve_length=True)
    return Desk(JobStore(config.desk_jobs, config.desk_max_jobs), settings, model)


def attachment(name: str) -> str:
    """A ``Content-Disposition`` for a download named ``name`` (the merchant's file name, any
    script): headers are Latin-1, so the name goes as RFC 6266's UTF-8 ``filename*``, with an ASCII
    ``filename`` beside it for clients that do not read that (quotes and control characters out)."""
    fallback = re.sub(r'[^\x20-\x7e]|["\\]', "_", name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
