"""Runs the desk's jobs, one at a time in a thread, round by round, through ``categorize_catalog``.

Every run writes the job's ``work/categorized.csv``, so all of a job's runs share its image cache:
each round classifies only its own photos, a round cut short by a restart resumes from the cache,
and the download (``Desk.download``) is one more run over the whole upload with the merchant's
decisions — the very function ``apparel catalog --decisions`` calls, so the same bytes.

    >>> desk = Desk(JobStore("desk-jobs"), CatalogConfig(images_dir="images"), lambda: (model_dir, predictor))
    >>> desk.start()                       # resumes the jobs a restart interrupted
    >>> job = desk.submit("products.csv", content)
    >>> desk.progress(job)["done"]
    40
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from apparel.desk.jobs import DECISIONS_FILE, DONE, FAILED, QUEUED, RUNNING, Job, JobStore, UploadedCatalog
from apparel.errors import ParameterError, SourceError
from apparel.images.fetch import is_url
from apparel.shop.catalog import CatalogConfig, categorize_catalog, companion_paths

OUTPUT_NAME, ROUND_NAME = "categorized.csv", "round.csv"
KEPT_DOWNLOADS = 2  # the jobs whose last download is kept in memory: a merchant fetches both files, then decides
logger = logging.getLogger(__name__)


def failure_message(error: Exception) -> str:
    """What a failed job tells the page: only the kind of failure, which the server's log details.
    The error's own words are the server's (a full disk names the job's file, a lock its folder,
    a bug its code); what the merchant's upload did wrong is said when it is read."""
    reason = os.strerror(error.errno) if isinstance(error, OSError) and error.errno else type(error).__name__
    return f"the server failed: {reason}; its log has the details; retry the job once it is mended"


class Stopped(Exception):
    """Raised from the progress callback to cut a round short when the desk stops."""


@dataclass(frozen=True)
class Download:
    categorized: bytes               # the upload with the changed cells spliced in
    review: bytes                    # the review CSV


class Desk:
    """The job store, the catalog settings every job runs with, and the thread that runs them.

    ``model`` returns (the model's run directory, the predictor to run): the served model at the
    moment a job runs (a reloaded version names a new cache key, so nothing stale is reused).
    """

    def __init__(self, store: JobStore, catalog: CatalogConfig,
                 model: Callable[[], tuple[str, object]]):
        self.store, self.catalog, self.model = store, catalog, model
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: dict[str, int] = {}   # job id → images finished in its current round
        self._locks: dict[str, threading.Lock] = {}
        # The last downloads made, by job, with what they were made from: both files come of one
        # run over the whole upload (27 s for 50,000 products), which each click ran again.
        self._downloads: OrderedDict[str, tuple[tuple, Download]] = OrderedDict()

    # ------------------------------------------------------------ the thread

    def start(self) -> None:
        """Start the thread; jobs left queued or running by the last server are queued again."""
        if self._thread is not None:
            return
        self._stop.clear()
        # A fresh queue: a stop leaves its wake-up (None) behind, which would end the new thread at once.
        self._queue = queue.Queue()
        for job in reversed(self.store.jobs()):  # oldest first
            if job.state()["state"] in (QUEUED, RUNNING):
                self._queue.put(job.id)
        self._thread = threading.Thread(target=self._work, name="desk-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the batch of photos in hand; the job stays queued for the next start."""
        if self._thread is None:
            return
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():  # a photo batch still in hand: it ends on its own, its job stays queued
            logger.warning("the desk's thread did not stop within %.0f s", timeout)
        self._thread = None

    def submit(self, name: str, content: bytes) -> Job:
        """A new job for an uploaded catalog, queued (a ``SourceError`` if it is no Shopify export,
        or if every photo it names is a local file and this desk has no folder to read them in)."""
        job = self.store.create(name, content, check=self._readable_here)
        self._queue.put(job.id)
        return job

    def _readable_here(self, catalog: UploadedCatalog, name: str) -> None:
        """Refuse an upload whose photos are all local files when this desk has no folder to read
        them in: else its job ends "done", every product "file not found"."""
        if self.catalog.images_dir is not None:
            return
        images = [image for product in catalog.products for image in product.images]
        if images and not any(is_url(image) for image in images):
            raise SourceError(name, f"its photos are local files ({images[0]}, …), and this desk reads image URLs "
                                    "only: upload the CSV as Shopify exports it, with image URLs, or have the server "
                                    "started with --images-dir, the folder that holds them")

    def retry(self, job: Job) -> Job:
        """Queue a failed job again: the rounds it finished are kept, the others run (a
        ``ParameterError`` for a job that has not failed)."""
        state = job.state()["state"]
        if state != FAILED:
            raise ParameterError(f"{{}} {job.id} is {state}; only a failed job is tried again", "job")
        job.update(state=QUEUED, error=None)
        self._queue.put(job.id)
        return job

    def _work(self) -> None:
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is None:
                break
            try:
                job = self.store.get(job_id)
            except ValueError:  # deleted while it waited (it had failed meanwhile): nothing to do
                continue
            try:
                self.run(job)
            except Stopped:
                break
            except Exception as error:  # noqa: BLE001 — a broken job must not stop the others
                logger.exception("desk job %s failed", job.id)
                try:
                    job.update(state=FAILED, error=failure_message(error))
                except Exception:  # noqa: BLE001 — its folder gone: the thread goes on to the next job
                    logger.exception("desk job %s could not be marked failed", job.id)
            finally:
                self._running.pop(job.id, None)

    # ------------------------------------------------------------ one job

    def lock(self, job: Job) -> threading.Lock:
        return self._locks.setdefault(job.id, threading.Lock())

    def images_dir(self) -> str:
        """The folder local image paths resolve inside. Without the server's, an empty one: a
        local path then names no file, rather than one of the job's own."""
        if self.catalog.images_dir is not None:
            return self.catalog.images_dir
        empty = self.store.root / "no-images"
        empty.mkdir(parents=True, exist_ok=True)
        return str(empty)

    def settings(self) -> tuple[CatalogConfig, object]:
        """The catalog settings of a run, and the predictor."""
        model_dir, predictor = self.model()
        return self.catalog.replace(model_dir=str(model_dir), images_dir=self.images_dir()), predictor

    def run(self, job: Job) -> None:
        """Classify the job's remaining rounds, saving each one's outcomes as it finishes."""
        if job.state()["state"] in (DONE, FAILED):
            return
        job.update(state=RUNNING, error=None)
        config, predictor = self.settings()
        catalog = job.catalog()
        self._running[job.id] = 0

        def progress(count: int) -> None:
            if self._stop.is_set():
                raise Stopped
            self._running[job.id] += count

        for index, (start, end) in enumerate(job.rounds()):
            if job.round_path(index).is_file():
                continue
            round_csv = job.work / ROUND_NAME
            round_csv.parent.mkdir(parents=True, exist_ok=True)
            round_csv.write_bytes(catalog.round_csv(start, end))
            self._running[job.id] = 0
            with self.lock(job):
                report = categorize_catalog(round_csv, job.work / OUTPUT_NAME, config, predictor, progress)
            job.save_round(index, [outcome.to_dict() for outcome in report.outcomes])
        job.update(state=DONE)

    def progress(self, job: Job) -> dict:
        """The job's state with ``done`` (products classified, counting the round in hand by its
        photos) and ``rounds`` finished: what the page polls."""
        try:
            bounds = job.rounds()
        except SourceError:  # the job failed, saying why: listed as such, never breaking the list
            return {**job.state(), "done": 0, "rounds": 0}
        state = job.state()
        finished = job.finished_rounds()
        done = bounds[finished - 1][1] if finished else 0
        running = self._running.get(job.id)  # read once: the thread may end the round meanwhile
        if running is not None and finished < len(bounds):
            done = min(bounds[finished][1], done + running)
        return {**state, "done": done if state["state"] != DONE else state["products"], "rounds": finished}

    def download(self, job: Job) -> Download:
        """The categorised CSV and its review CSV with the merchant's decisions: ``categorize_catalog``
        over the whole upload (every photo is in the job's cache by now)."""
        job.catalog()  # an upload that no longer reads is said by its own name, not the server's path
        state = job.state()["state"]
        if state != DONE:
            raise ValueError(f"the job is {state}; download it once every product is classified")
        config, predictor = self.settings()
        out = job.work / OUTPUT_NAME
        with self.lock(job):
            decisions = job.folder / DECISIONS_FILE
            made_of = (config, id(predictor), decisions.read_bytes() if decisions.is_file() else b"")
            kept = self._downloads.get(job.id)
            if kept is not None and kept[0] == made_of:
                self._downloads.move_to_end(job.id)
                return kept[1]
            categorize_catalog(job.upload, out, config, predictor, decisions=job.decisions())
            written = Download(out.read_bytes(), companion_paths(out)[0].read_bytes())
            self._downloads[job.id] = (made_of, written)
            while len(self._downloads) > KEPT_DOWNLOADS:
                self._downloads.popitem(last=False)
            return written

    def delete(self, job: Job) -> None:
        """``JobStore.delete``, once a download being made of the job is done (its files went from
        under it, and its error named the server's own path)."""
        with self.lock(job):
            self.store.delete(job)
            self._downloads.pop(job.id, None)

