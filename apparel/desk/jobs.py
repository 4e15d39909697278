"""The desk's jobs on disk: one folder per uploaded catalog, every file written atomically, so a
page reload or a server restart finds each job as it was.

    >>> store = JobStore("desk-jobs")
    >>> job = store.create("products.csv", Path("products.csv").read_bytes())
    >>> job.decide(["summer-dress"], "Apparel & Accessories > Clothing > Dresses")
    {'summer-dress': 'aa-1-4'}
    >>> store.get(job.id).decisions()          # from disk: what a restarted server reads
    {'summer-dress': 'aa-1-4'}

A job's folder::

    job.json            state: queued, running, done or failed; names, counts, rounds done
    upload.csv          the uploaded file, byte for byte (the input of every catalog run)
    decisions.csv       the merchant's decisions (``apparel.shop.decisions``), rewritten at each one
    rounds/NNNN.json    the model's outcome for each product of a finished round
    work/               categorize_catalog's output, review CSV and image cache (shared by all rounds)

The products are classified in rounds (``ROUND_SIZES``), the first small so the table starts to
fill within a second; a round's outcomes are kept only once it is finished, and its photos are in
the image cache as soon as each batch is, so an interrupted round costs nothing to redo.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from apparel.artifacts import atomic_path, read_json, write_json
from apparel.errors import ParameterError, SourceError
from apparel.shop.attribute_cells import BY_PARAMETER
from apparel.shop.catalog import Product, find_columns, group_products
from apparel.shop.decisions import decided_category, read_decisions, write_decisions
from apparel.shop.splice import decode_csv, parse_records

STATE_FILE, UPLOAD_FILE, DECISIONS_FILE = "job.json", "upload.csv", "decisions.csv"
ROUNDS_DIR, WORK_DIR = "rounds", "work"
# Products per round: a first small one shows results at once, later ones amortise each run's start.
ROUND_SIZES = (10, 40, 150)
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
UNKNOWN_NAMED = 20  # unknown handles an error names
_JOB_ID = re.compile(r"[0-9a-f]{16}")


def default_jobs_dir() -> Path:
    """Where ``apparel serve`` keeps the desk's jobs: ``$XDG_STATE_HOME/apparel/desk``
    (``~/.local/state/apparel/desk``): state that outlives a restart, not a cache to clear."""
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "apparel" / "desk"


def round_bounds(count: int) -> list[tuple[int, int]]:
    """(start, end) of each round over ``count`` products: ``ROUND_SIZES``, then the last size again."""
    bounds, start = [], 0
    while start < count:
        size = ROUND_SIZES[min(len(bounds), len(ROUND_SIZES) - 1)]
        bounds.append((start, min(count, start + size)))
        start += size
    return bounds


def check_round(from_round, finished: int) -> None:
    """A ``ParameterError`` naming ``from_round`` unless it is a round from 0 to ``finished`` (that
    one itself: nothing new yet)."""
    if isinstance(from_round, bool) or not isinstance(from_round, int) or not 0 <= from_round <= finished:
        raise ParameterError(f"{{}} must be a round from 0 to {finished} (the rounds finished), got {from_round!r:.40}",
                             "from_round")


@dataclass(frozen=True)
class UploadedCatalog:
    """The parsed upload: its products (file order) and the raw text of its rows."""

    bom: bytes
    header: str                      # the header line, ending in a line ending
    products: list[Product]
    rows: list[tuple[str, str]]      # (handle, the row's text ending in a line ending), file order
    columns: dict[str, int | None]   # role → column index (``find_columns``)

    @classmethod
    def parse(cls, content: bytes, name: str) -> UploadedCatalog:
        """The upload's products; a ``SourceError`` naming ``name`` when it is no Shopify export."""
        bom, text = decode_csv(content, name)
        try:
            records = parse_records(text)
        except ValueError as error:
            raise SourceError(name, str(error)) from None
        if len(records) < 2:
            raise SourceError(name, "no product rows; upload a Shopify product export")
        # The desk writes the colour and the sleeve length (serve.desk's settings): a file with two
        # columns for one of them is refused now, not when its job runs.
        columns = find_columns(records[0], Path(name), attributes=tuple(BY_PARAMETER.values()))
        starts = [record.start for record in records] + [len(text)]
        rows = []
        for record, end in zip(records[1:], starts[2:]):
            handle = record.value(columns["handle"]).strip()
            if handle:
                rows.append((handle, _ended(text[record.start:end])))
        products = group_products(records[1:], columns)
        if not products:
            raise SourceError(name, "no product rows with a handle; upload a Shopify product export")
        return cls(bom, _ended(text[:records[1].start]), products, rows, columns)

    def title(self, product: Product) -> str:
        return product.row.value(self.columns["title"])

    def round_csv(self, start: int, end: int) -> bytes:
        """A catalog of products ``start:end`` alone: the header and their rows, in file order."""
        handles = {product.handle for product in self.products[start:end]}
        text = self.header + "".join(piece for handle, piece in self.rows if handle in handles)
        return self.bom + text.encode("utf-8")


def _ended(piece: str) -> str:
    """``piece`` ending in a line ending (the file's last row may have none)."""
    return piece if piece.endswith(("\n", "\r")) else piece + "\n"


class HeldCatalogs:
    """The parsed uploads kept in memory: the ``most`` used last. Parsed, an upload takes some 30
    times its size (180 MB for 50,000 rows), and every job's was kept for good."""

    def __init__(self, most: int = 4):
        self.most = most
        self._jobs: OrderedDict[str, "Job"] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, job: "Job") -> None:
        with self._lock:
            self._jobs[job.id] = job
            self._jobs.move_to_end(job.id)
            while len(self._jobs) > self.most:
                _, oldest = self._jobs.popitem(last=False)
                oldest._catalog = None  # parsed again when asked for; a caller holding it keeps its own


class Job:
    """One job's folder; its state is read from disk each time, so two servers agree."""

    def __init__(self, folder: Path, held: HeldCatalogs | None = None):
        self.folder = folder
        self.id = folder.name
        self._lock = threading.Lock()  # one decision written at a time
        self._catalog: UploadedCatalog | None = None
        self._held = held

    @property
    def upload(self) -> Path:
        return self.folder / UPLOAD_FILE

    @property
    def work(self) -> Path:
        return self.folder / WORK_DIR

    def state(self) -> dict:
        return read_json(self.folder / STATE_FILE)

    def update(self, **changes) -> dict:
        state = {**self.state(), **changes}
        write_json(self.folder / STATE_FILE, state)
        return state

    def catalog(self) -> UploadedCatalog:
        """The upload's products. An upload that no longer reads (taken by an earlier version, whose
        rules were looser) fails the job with the reason, and the ``SourceError`` is raised on."""
        catalog = self._catalog
        if catalog is None:
            try:
                catalog = self._catalog = UploadedCatalog.parse(self.upload.read_bytes(), self.state()["name"])
            except SourceError as error:
                self.update(state=FAILED, error=f"{error}; delete this job and upload the file again")
                raise
        if self._held is not None:
            self._held.keep(self)
        return catalog

    def rounds(self) -> list[tuple[int, int]]:
        # From the count job.json keeps: listing the jobs parsed every upload (3 s for one of
        # 50,000 rows, on the event loop) and kept each in memory.
        count = self.state().get("products")
        return round_bounds(count if isinstance(count, int) else len(self.catalog().products))

    def round_path(self, index: int) -> Path:
        return self.folder / ROUNDS_DIR / f"{index:04d}.json"

    def finished_rounds(self) -> int:
        """How many rounds are finished, counted from the first (they finish in order)."""
        count = 0
        while self.round_path(count).is_file():
            count += 1
        return count

    def outcomes(self) -> dict[str, dict]:
        """Handle → the model's outcome (``ProductOutcome.to_dict``), for the finished rounds."""
        return self.round_outcomes(0, self.finished_rounds())

    def round_outcomes(self, from_round: int, finished: int) -> dict[str, dict]:
        """Handle → the model's outcome for rounds ``from_round`` to ``finished - 1`` (``finished``:
        the rounds finished, as the caller counted them), reading those rounds' files alone: a page
        that has the earlier rounds asks for the new ones at each poll, and re-reading all of them
        made a large catalog's job quadratic. A ``ParameterError`` naming ``from_round`` when it is
        no round from 0 to ``finished``."""
        check_round(from_round, finished)
        found = {}
        for index in range(from_round, finished):
            for outcome in read_json(self.round_path(index))["outcomes"]:
                found[outcome["handle"]] = outcome
        return found

    def round_products(self, from_round: int, finished: int) -> range:
        """The indices (file order) of the products of rounds ``from_round`` to ``finished - 1``."""
        check_round(from_round, finished)
        bounds = self.rounds()[from_round:finished]
        return range(bounds[0][0], bounds[-1][1]) if bounds else range(0)

    def save_round(self, index: int, outcomes: list[dict]) -> None:
        write_json(self.round_path(index), {"outcomes": outcomes})

    def decisions(self) -> dict[str, str]:
        """Handle → the merchant's category id, or ``KEEP``."""
        path = self.folder / DECISIONS_FILE
        return read_decisions(path) if path.is_file() else {}

    def decide(self, handles: Iterable[str], category: str | None) -> dict[str, str]:
        """Record the merchant's ``category`` (an id, path or GID; ``KEEP``; None to give the
        products back to the model) for each of ``handles``, and return all decisions."""
        handles = list(dict.fromkeys(handles))
        known = {product.handle for product in self.catalog().products}
        unknown = [handle for handle in handles if handle not in known]
        if not handles or unknown:
            # A few named: a client's list of many thousands would otherwise come back whole in the error.
            named = ", ".join(unknown[:UNKNOWN_NAMED]) + (f" and {len(unknown) - UNKNOWN_NAMED:,} more"
                                                          if len(unknown) > UNKNOWN_NAMED else "")
            raise ParameterError(f"{{}} must name products of this catalog; unknown: {named or 'none given'}", "handles")
        value = None if category is None else decided_category(category)
        with self._lock:
            decisions = self.decisions()
            for handle in handles:
                if value is None:
                    decisions.pop(handle, None)
                else:
                    decisions[handle] = value
            write_decisions(self.folder / DECISIONS_FILE, decisions)
        return decisions


def upload_name(name: str | None) -> str:
    """The name a job keeps of its upload: the file's own name, whatever folders (either slash) a
    client put before it, without control characters; ``products.csv`` when nothing is left."""
    name = "".join(character for character in (name or "") if character.isprintable())
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return "products.csv" if name in ("", ".", "..") else name


class JobStore:
    """The jobs under ``root`` (created at the first upload)."""

    def __init__(self, root: str | os.PathLike, max_jobs: int = 100):
        self.root, self.max_jobs = Path(root), max_jobs
        self._jobs: dict[str, Job] = {}
        self._held = HeldCatalogs()
        self._lock = threading.Lock()
        # Counting the jobs and making the new one's folder are one step: uploads sent together each
        # counted the same jobs and went past max_jobs (10 at once on a desk of 3 made 5).
        self._creating = threading.Lock()

    def create(self, name: str, content: bytes, check: Callable[[UploadedCatalog, str], None] | None = None) -> Job:
        """A new job for an uploaded catalog; a ``SourceError`` when it is no Shopify export (or
        ``check(catalog, name)`` of the parsed upload raises one), a ``ParameterError`` when the desk holds
        ``max_jobs`` already (each keeps its upload and its photos' cache: uploads alone must not
        fill the disk)."""
        name = upload_name(name)
        catalog = UploadedCatalog.parse(content, name)
        if check is not None:
            check(catalog, name)
        with self._creating:
            if len(self.jobs()) >= self.max_jobs:
                raise ParameterError(f"the desk holds {self.max_jobs} jobs, its most; delete finished ones "
                                     "(DELETE /desk/api/jobs/<id>) or give the server a larger {}", "desk_max_jobs")
            job_id = secrets.token_hex(8)
            folder = self.root / job_id
            folder.mkdir(parents=True)
            try:
                with atomic_path(folder / UPLOAD_FILE) as temporary:
                    temporary.write_bytes(content)
                write_json(folder / STATE_FILE, {"id": job_id, "name": name, "created": time.time(),
                                                 "state": QUEUED, "error": None, "products": len(catalog.products)})
            except BaseException:  # a folder without its state is no job: nothing would count or delete it
                shutil.rmtree(folder, ignore_errors=True)
                raise
        job = self.get(job_id)
        job._catalog = catalog
        self._held.keep(job)
        return job

    def get(self, job_id: str) -> Job:
        """The job ``job_id``; a ``ParameterError`` when there is none."""
        if not _JOB_ID.fullmatch(job_id) or not (self.root / job_id / STATE_FILE).is_file():
            raise ParameterError(f"{{}} {job_id!r:.40} is not a job of this desk; upload the catalog again", "job")
        with self._lock:
            return self._jobs.setdefault(job_id, Job(self.root / job_id, self._held))

    def delete(self, job: Job) -> None:
        """Remove a finished (or failed) job and everything it holds; a ``ParameterError`` while
        it is queued or running (its thread may be writing there)."""
        state = job.state()["state"]
        if state not in (DONE, FAILED):
            raise ParameterError(f"{{}} {job.id} is {state}; delete it once it is done", "job")
        with self._lock:
            self._jobs.pop(job.id, None)
            shutil.rmtree(job.folder)

    def jobs(self) -> list[Job]:
        """Every job, newest first."""
        if not self.root.is_dir():
            return []
        found = [self.get(folder.name) for folder in self.root.iterdir()
                 if _JOB_ID.fullmatch(folder.name) and (folder / STATE_FILE).is_file()]
        return sorted(found, key=lambda job: job.state()["created"], reverse=True)

