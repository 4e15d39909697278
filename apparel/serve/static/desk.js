// The merchant's desk: upload a product CSV, follow the job (polled), review and decide each
// product, download the CSV. The job lives on the server (its id in the URL's #), so a reload or a
// server restart finds it as it was. The table draws only the rows in view: thousands stay fast.
// No framework, no build step.
"use strict";

const ROW_HEIGHT = 56; // px, as .row in desk.css
const OVERSCAN = 6; // rows drawn above and below the view
const POLL_MS = 500;
const RETRY_MS = 2000;
const REVIEW = new Set(["uncertain", "outside the vertical", "unreadable image", "no image", "row too short",
  "not Shopify's category"]);

const $ = (id) => document.getElementById(id);
const viewport = $("viewport"), spacer = $("spacer");
let job = null; // the job's state, as GET /desk/api/jobs/{id} answers
let products = []; // every product, file order
let shown = []; // the products the filters keep, in the chosen order
let cursor = 0; // index into shown
const selected = new Set(); // handles
let tableRounds = -1; // the finished rounds the table holds; -1: no table yet
let pollTimer = null, pollFailed = false, searchTimer = null, searchHits = [], searchIndex = -1;
let openId = ""; // the job the page follows: an answer about another one (opened before) is dropped
let searchedWords = null; // the words searchHits answer; hits of older words are never chosen
// Decisions made here, numbered: a table fetched while one was being made is older than it, so the
// decisions made since its request are laid over it rather than lost.
let decisionCount = 0;
const recentDecisions = [];
const brokenThumbnails = new Set(); // asked once: a photo that failed is not fetched again at every redraw

function percent(p) {
  return p == null ? "" : (100 * p).toFixed(1) + "%";
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

async function api(path, options) {
  const answer = await fetch(path, options);
  const body = answer.headers.get("content-type")?.includes("json") ? await answer.json() : null;
  if (!answer.ok) throw new Error(body?.error || `${answer.status} ${answer.statusText}`);
  return body;
}

// ------------------------------------------------------------------ jobs and polling

async function listJobs() {
  const { jobs } = await api("/desk/api/jobs");
  const select = $("jobs");
  select.replaceChildren(new Option("—", ""));
  for (const item of jobs) {
    const when = new Date(item.created * 1000).toLocaleString();
    select.add(new Option(`${item.name} · ${item.products} products · ${when}`, item.id));
  }
  select.value = job ? job.id : "";
}

async function openJob(id) {
  clearTimeout(pollTimer);
  openId = id;
  job = null; products = []; selected.clear(); cursor = 0; tableRounds = -1; recentDecisions.length = 0;
  brokenThumbnails.clear();
  history.replaceState(null, "", id ? "#" + id : location.pathname);
  refilter();
  showError("");  // the last job's error is not this one's
  clearProgress();  // nor its status and download links, while this one's are asked for
  if (!id) return;
  // An id from the address goes into the API's paths: "x/products?" or "../.." would name others.
  if (!/^[A-Za-z0-9_-]+$/.test(id)) {
    showError(`'${id}' is not a job of this desk; choose one in the menu`);
    return;
  }
  try {
    await poll(id);
  } catch (error) {
    showError(error.message);
  }
  listJobs().catch(() => {});
}

async function poll(id) {
  let state = await api(`/desk/api/jobs/${id}`);
  if (id !== openId) return; // another job was opened meanwhile: this answer is not about it
  if (state.rounds !== tableRounds) {
    // The rows first, then the status that counts them: "Done" means the table is complete (a job
    // is done once its last round is, so a table of all its rounds holds every row).
    const asked = decisionCount;
    // The whole table once, then only the rounds finished since: a catalog of 100,000 products
    // finishes some 750 rounds, and the whole table at each was 40 MB a second. A job with fewer
    // rounds than the table (its folder put back from a copy) is fetched whole again.
    const from = tableRounds > 0 && state.rounds > tableRounds ? tableRounds : 0;
    const table = await api(`/desk/api/jobs/${id}/products` + (from ? `?from_round=${from}` : ""));
    // Another job opened meanwhile, or this one opened again: the rows it adds to are gone.
    if (id !== openId || (from && tableRounds !== from)) return;
    state = table.job;
    tableRounds = state.rounds;
    const byHandle = new Map(table.products.map((product) => [product.handle, product]));
    const newer = recentDecisions.filter((made) => made.number > asked);  // the older ones are in the table
    for (const made of newer) if (byHandle.has(made.handle)) byHandle.get(made.handle).decision = made.decision;
    recentDecisions.splice(0, recentDecisions.length, ...newer);
    mergeProducts(table.products, from > 0);
  }
  job = state;
  showProgress();
  if (pollFailed) { pollFailed = false; showError(""); brokenThumbnails.clear(); } // the server is back: ask again
  if (state.state === "queued" || state.state === "running") schedulePoll(id, POLL_MS);
}

function schedulePoll(id, delay) {
  // A server that went away (a restart) is asked again until it answers: the job resumes there.
  if (id !== openId) return; // the page follows another job now, with its own timer
  clearTimeout(pollTimer);
  pollTimer = setTimeout(() => poll(id).catch((error) => {
    if (job?.id !== id) return;
    pollFailed = true;
    showError(`The server does not answer (${error.message}); trying again…`);
    schedulePoll(id, RETRY_MS);
  }), delay);
}

function showProgress() {
  const done = job.done, total = job.products;
  $("progress").max = Math.max(total, 1);
  $("progress").value = done;
  $("job-name").textContent = job.name;
  const what = { queued: "Waiting to start", running: "Classifying photos", done: "Done", failed: "Failed" }[job.state];
  $("status").textContent = `${what}: ${done} of ${total} products` + (job.error ? ` (${job.error})` : "");
  $("retry").hidden = job.state !== "failed";
  const ready = job.state === "done";
  for (const [id, file] of [["download-csv", "categorized.csv"], ["download-review", "review.csv"]]) {
    $(id).classList.toggle("disabled", !ready);
    $(id).setAttribute("aria-disabled", String(!ready));
    if (ready) $(id).href = `/desk/api/jobs/${job.id}/${file}`; else $(id).removeAttribute("href");
  }
  $("download-decisions").href = `/desk/api/jobs/${job.id}/decisions.csv`;
  $("download-decisions").classList.remove("disabled");
  $("download-decisions").setAttribute("aria-disabled", "false");
}

function clearProgress() {
  // No job open ("—" in the job menu): nothing of the last one stays on screen or in a link.
  $("progress").value = 0;
  $("job-name").textContent = "";
  $("status").textContent = "No catalog yet.";
  $("retry").hidden = true;
  for (const id of ["download-csv", "download-review", "download-decisions"]) {
    $(id).classList.add("disabled");
    $(id).setAttribute("aria-disabled", "true");
    $(id).removeAttribute("href");
  }
}

function mergeProducts(rows, some) {
  // `some`: the rows of the rounds new since the table, each in its place (rows carry their index).
  const keep = shown[cursor]?.handle;
  if (some) for (const row of rows) products[row.index] = row;
  else products = rows;
  refilter(keep);
}

// ------------------------------------------------------------------ filters, sort, drawing

function isReview(product) {
  return REVIEW.has(product.status) && !product.decision;
}

function refilter(keepHandle) {
  const filter = $("filter").value, low = Number($("low").value), words = $("category-filter").value.trim().toLowerCase();
  shown = products.filter((product) => {
    if (filter === "review" && !isReview(product)) return false;
    if (filter === "low" && !(product.confidence != null && product.confidence < low && !product.decision)) return false;
    if (filter === "decided" && !product.decision) return false;
    if (filter === "undecided" && product.decision) return false;
    if (words) {
      const path = (product.decision?.path || product.suggested || product.likeliest || "").toLowerCase();
      if (!path.includes(words)) return false;
    }
    return true;
  });
  const sort = $("sort").value;
  if (sort !== "file") {
    const sign = sort === "confidence-asc" ? 1 : -1;
    const value = (product) => product.confidence == null ? (sign > 0 ? -1 : 2) : product.confidence;
    shown.sort((a, b) => sign * (value(a) - value(b)) || a.index - b.index);
  }
  const found = keepHandle == null ? -1 : shown.findIndex((product) => product.handle === keepHandle);
  cursor = Math.max(0, Math.min(found >= 0 ? found : cursor, shown.length - 1));
  spacer.style.height = shown.length * ROW_HEIGHT + "px";
  $("shown").textContent = `${shown.length} of ${products.length} shown`;
  draw();
}

function suggestionCell(product) {
  const cell = document.createElement("span");
  cell.className = "path";
  const notes = [];  // one line under the path: the row's height is fixed (the table is virtualised)
  if (product.suggested) {
    cell.textContent = product.suggested;
    if (product.likeliest && product.likeliest !== product.suggested) {
      // Only the parent was sure: say which leaf the photo leaned to.
      notes.push(`parent shown: ${product.likeliest.split(" > ").pop()} was uncertain`);
    }
  } else if (product.status === "waiting") {
    cell.textContent = "classifying…";
    cell.classList.add("muted");
  } else {
    cell.textContent = product.likeliest ? `— (likeliest: ${product.likeliest.split(" > ").pop()})` : "—";
  }
  if (product.colour) notes.push(`colour: ${product.colour}`);
  if (product.sleeve) notes.push(`sleeves: ${product.sleeve}`);
  if (notes.length) {
    const note = document.createElement("span");
    note.className = "parent-note";
    note.textContent = notes.join(" · ");
    cell.append(note);
  }
  return cell;
}

function reasonCell(product) {
  const cell = document.createElement("span");
  cell.className = "reason";
  if (product.decision) {
    cell.classList.add("decided");
    cell.textContent = product.decision.path ? `✓ ${product.decision.path.split(" > ").pop()}` : "✓ left as it is";
    cell.title = product.decision.path || "the product's cells stay as they are";
  } else if (REVIEW.has(product.status)) {
    cell.classList.add("review");
    cell.textContent = product.status;
  } else {
    cell.classList.add("muted");
    cell.textContent = product.status === "categorized" ? "suggested" : product.status;
  }
  return cell;
}

function rowElement(product, position) {
  const row = document.createElement("div");
  row.className = "row";
  row.setAttribute("role", "row");
  row.dataset.handle = product.handle;
  row.style.top = position * ROW_HEIGHT + "px";
  if (position === cursor) row.classList.add("cursor");
  if (selected.has(product.handle)) row.classList.add("selected");
  const box = document.createElement("input");
  box.type = "checkbox";
  // The table is one stop of the Tab key, its viewport (arrows move, space selects): as stops of
  // their own, the boxes were drawn anew as the table scrolled, the focus fell to the page, and Tab
  // went round the rows in view for ever. The mouse still ticks them.
  box.tabIndex = -1;
  box.checked = selected.has(product.handle);
  box.setAttribute("aria-label", "select " + product.handle);
  box.addEventListener("change", () => {
    // The redraw replaces this box: the keys go on to the table, at this row, rather than to nothing.
    cursor = position;
    toggle(product.handle, box.checked);
    viewport.focus({ preventScroll: true });
  });
  const photo = document.createElement("img");
  photo.className = "thumb";
  photo.alt = "";
  photo.loading = "lazy";
  // Not a photo the server could not read (a refused address, a damaged file), nor one that failed here.
  if (product.thumbnail && product.status !== "unreadable image" && !brokenThumbnails.has(product.thumbnail)) {
    photo.addEventListener("error", () => brokenThumbnails.add(product.thumbnail), { once: true });
    photo.src = product.thumbnail;
  }
  const title = document.createElement("span");
  title.className = "title";
  const strong = document.createElement("strong");
  strong.textContent = product.title || product.handle;
  const handle = document.createElement("span");
  handle.className = "muted";
  handle.textContent = product.handle;
  title.append(strong, handle);
  const confidence = document.createElement("span");
  confidence.className = "confidence";
  confidence.textContent = percent(product.confidence);
  const cells = [box, photo, title, suggestionCell(product), confidence, reasonCell(product)];
  for (const content of cells) {
    const cell = document.createElement("span");
    cell.setAttribute("role", "gridcell");
    cell.append(content);
    row.append(cell);
  }
  row.addEventListener("click", (event) => {
    if (event.target === box) return;
    cursor = position;
    draw();
    viewport.focus({ preventScroll: true });
  });
  return row;
}

function draw() {
  const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(shown.length, Math.ceil((viewport.scrollTop + viewport.clientHeight) / ROW_HEIGHT) + OVERSCAN);
  const rows = [];
  for (let position = first; position < last; position++) rows.push(rowElement(shown[position], position));
  spacer.replaceChildren(...rows);
  $("selected").textContent = `${selected.size} selected`;
  $("select-all").checked = shown.length > 0 && shown.every((product) => selected.has(product.handle));
}

function moveCursor(to) {
  if (!shown.length) return;
  cursor = Math.max(0, Math.min(to, shown.length - 1));
  const top = cursor * ROW_HEIGHT;
  if (top < viewport.scrollTop) viewport.scrollTop = top;
  else if (top + ROW_HEIGHT > viewport.scrollTop + viewport.clientHeight) viewport.scrollTop = top + ROW_HEIGHT - viewport.clientHeight;
  draw();
}

function toggle(handle, on) {
  if (on) selected.add(handle); else selected.delete(handle);
  draw();
}

// ------------------------------------------------------------------ decisions

function targets() {
  // The selected products the filters show, else the one under the cursor: a row hidden by a
  // filter is never decided unseen.
  const visible = shown.filter((product) => selected.has(product.handle)).map((product) => product.handle);
  if (visible.length) return visible;
  return shown[cursor] ? [shown[cursor].handle] : [];
}

async function decide(handles, category) {
  if (!job || !handles.length) return;
  const id = job.id;
  try {
    const { decisions } = await api(`/desk/api/jobs/${id}/decisions`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ handles, category }),
    });
    if (id !== openId) return; // another job is open now (its handles may be the same): not its decisions
    const byHandle = new Map(products.map((product) => [product.handle, product]));
    for (const [handle, decision] of Object.entries(decisions)) {
      byHandle.get(handle).decision = decision;
      recentDecisions.push({ number: ++decisionCount, handle, decision });
    }
    showError("");
    // Only these: rows selected while the answer was on its way stay selected.
    for (const handle of handles) selected.delete(handle);
    refilter(shown[cursor]?.handle);
  } catch (error) {
    showError(error.message);
  }
}

async function acceptSuggestions() {
  // Each product its own suggestion; one without one cannot be accepted.
  const chosen = targets().map((handle) => products.find((product) => product.handle === handle));
  const bySuggestion = new Map();
  for (const product of chosen) {
    if (!product?.suggested) continue;
    bySuggestion.set(product.suggested, [...(bySuggestion.get(product.suggested) || []), product.handle]);
  }
  if (!bySuggestion.size) {
    showError("nothing to accept: the model suggests no category for that; search for one instead");
    return;
  }
  for (const [path, handles] of bySuggestion) await decide(handles, path);
}

// ------------------------------------------------------------------ taxonomy search

function drawSearchHits() {
  const list = $("search-results");
  list.replaceChildren(...searchHits.map((category, position) => {
    const item = document.createElement("li");
    item.setAttribute("role", "option");
    item.setAttribute("aria-selected", String(position === searchIndex));
    item.dataset.id = category.id;
    item.textContent = category.path;
    item.addEventListener("mousedown", (event) => { event.preventDefault(); chooseHit(position); });
    return item;
  }));
  list.hidden = !searchHits.length;
}

async function search(words) {
  if (!words.trim()) { searchHits = []; drawSearchHits(); return; }
  try {
    const { categories } = await api(`/desk/api/taxonomy?q=${encodeURIComponent(words)}&limit=8`);
    if ($("search").value === words) {
      searchHits = categories; searchIndex = 0; searchedWords = words; drawSearchHits();
    }
  } catch (error) {
    showError(error.message);
  }
}

async function chooseHit(position) {
  const category = searchHits[position];
  if (!category) return;
  searchHits = []; drawSearchHits();
  $("search").value = "";
  await decide(targets(), category.id);
  viewport.focus({ preventScroll: true });
}

// ------------------------------------------------------------------ wiring

$("csv").addEventListener("change", async () => {
  const file = $("csv").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("csv", file, file.name);
  $("status").textContent = `Uploading ${file.name}…`;
  try {
    const state = await api("/desk/api/jobs", { method: "POST", body: form });
    showError("");
    await openJob(state.id);
  } catch (error) {
    showError(error.message);
    if (job) showProgress(); else clearProgress();  // the job on screen is still what the status says
  }
  $("csv").value = "";
});
$("jobs").addEventListener("change", () => openJob($("jobs").value));
for (const id of ["filter", "low", "category-filter", "sort"]) {
  $(id).addEventListener("input", () => refilter(shown[cursor]?.handle));
}
$("select-all").addEventListener("change", () => {
  for (const product of shown) {
    if ($("select-all").checked) selected.add(product.handle); else selected.delete(product.handle);
  }
  draw();
});
$("retry").addEventListener("click", async () => {
  // The rounds it finished stay; the page polls it again from where it stopped.
  const id = job.id;
  try {
    const state = await api(`/desk/api/jobs/${id}/retry`, { method: "POST" });
    if (id !== openId) return; // another job was opened meanwhile; this one's page polls it when opened
    job = state;
    showError("");
    showProgress();
    schedulePoll(job.id, POLL_MS);
  } catch (error) {
    showError(error.message);
  }
});
$("accept").addEventListener("click", acceptSuggestions);
$("keep").addEventListener("click", () => decide(targets(), "keep"));
$("undo").addEventListener("click", () => decide(targets(), null));
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  // The hits of the words before are gone at once: Enter must never choose one of them.
  searchHits = []; searchedWords = null; drawSearchHits();
  const words = $("search").value;
  searchTimer = setTimeout(() => search(words), 120);
});
$("search").addEventListener("keydown", (event) => {
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    searchIndex = Math.max(0, Math.min(searchIndex + (event.key === "ArrowDown" ? 1 : -1), searchHits.length - 1));
    drawSearchHits();
  } else if (event.key === "Enter") {
    event.preventDefault();
    const words = $("search").value;
    if (searchedWords === words) chooseHit(searchIndex);
    else {  // typed faster than the search: ask for these words now, then choose their first hit
      clearTimeout(searchTimer);
      search(words).then(() => { if (searchedWords === words) chooseHit(searchIndex); });
    }
  } else if (event.key === "Escape") {
    searchHits = []; drawSearchHits();
    viewport.focus({ preventScroll: true });
  }
});
$("search").addEventListener("blur", () => { searchHits = []; drawSearchHits(); });
viewport.addEventListener("scroll", () => requestAnimationFrame(draw), { passive: true });
viewport.addEventListener("keydown", (event) => {
  if (event.key === " " && event.target.type === "checkbox") return; // the box's own click: its row, not the cursor's
  const page = Math.max(1, Math.floor(viewport.clientHeight / ROW_HEIGHT) - 1);
  const moves = { ArrowDown: cursor + 1, j: cursor + 1, ArrowUp: cursor - 1, k: cursor - 1, PageDown: cursor + page,
                  PageUp: cursor - page, Home: 0, End: shown.length - 1 };
  if (event.key in moves) {
    event.preventDefault();
    if (event.shiftKey && shown[cursor]) selected.add(shown[cursor].handle);
    moveCursor(moves[event.key]);
    if (event.shiftKey && shown[cursor]) toggle(shown[cursor].handle, true);
  } else if (event.key === " ") {
    event.preventDefault();
    if (shown[cursor]) toggle(shown[cursor].handle, !selected.has(shown[cursor].handle));
  } else if (event.key === "a" || event.key === "Enter") {
    event.preventDefault();
    acceptSuggestions();
  } else if (event.key === "x") {
    event.preventDefault();
    decide(targets(), "keep");
  } else if (event.key === "u") {
    event.preventDefault();
    decide(targets(), null);
  } else if (event.key === "/") {
    event.preventDefault();
    $("search").focus();
  } else if (event.key === "Escape") {
    selected.clear();
    draw();
  }
});
window.addEventListener("hashchange", () => {
  if (location.hash.slice(1) !== (job?.id || "")) openJob(location.hash.slice(1));
});

openJob(location.hash.slice(1)).then(listJobs).catch((error) => showError(error.message));
