// The apparel page: each chosen or dropped photo is sent on its own to POST /predict?preview=true,
// so one bad file fails alone and results appear as they come. No framework, no build step.
// What the served model takes (a 28×28 Fashion-MNIST input or an S×S colour photo) and its classes
// come from the metadata endpoint: the page works for either kind of model.
"use strict";

const PARALLEL = 4; // uploads in flight at once; the server batches them together

const drop = document.getElementById("drop");
const input = document.getElementById("files");
const results = document.getElementById("results");
const statusLine = document.getElementById("status");
const template = document.getElementById("card");
let inputKind = "fashion-mnist"; // updated from the metadata
let inputCaption = "model input";

function percent(p) {
  return (100 * p).toFixed(1) + "%";
}

function categoryText(category) {
  if (category == null) return "";
  if (category.path == null) {
    // Left for a person: the reason (not apparel, or no category sure enough) says why.
    return "No category: " + category.reason + " (" + percent(category.confidence) + ")";
  }
  return "Category: " + category.path + " (" + percent(category.confidence) + ")";
}

function colourText(color) {
  if (color == null) return "";
  const second = color.second ? " and " + color.second.name : "";
  return "Colour: " + color.name + second + " (" + percent(color.confidence) + ")";
}

function sleeveText(sleeve) {
  if (sleeve == null) return "";
  return "Sleeve length: " + sleeve.name + " (" + percent(sleeve.confidence) + ")";
}

function newCard(file) {
  const card = template.content.firstElementChild.cloneNode(true);
  card.querySelector(".name").textContent = file.name;
  card.querySelector(".input").classList.add(inputKind === "photo" ? "rgb" : "grayscale");
  card.querySelector(".input-caption").textContent = inputCaption;
  const photo = card.querySelector(".photo");
  photo.src = URL.createObjectURL(file);
  photo.addEventListener("load", () => URL.revokeObjectURL(photo.src), { once: true });
  results.prepend(card);
  return card;
}

function showPrediction(card, prediction) {
  card.querySelector(".input").src = prediction.input_png;
  card.querySelector(".label").textContent = prediction.label;
  card.querySelector(".category").textContent = categoryText(prediction.category);
  card.querySelector(".colour").textContent = colourText(prediction.color);
  card.querySelector(".sleeve").textContent = sleeveText(prediction.sleeve_length_type);
  const list = card.querySelector(".top");
  for (const { label, probability } of prediction.top_k) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = label;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = percent(probability);
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(probability);
    item.append(name, bar, value);
    list.append(item);
  }
}

function showError(card, message) {
  card.classList.add("failed");
  card.querySelector(".input").removeAttribute("src");
  card.querySelector(".label").textContent = "Error: " + message;
}

async function classify(file, card) {
  const form = new FormData();
  form.append("files", file, file.name);
  try {
    const response = await fetch("/predict?preview=true", { method: "POST", body: form });
    const body = await response.json().catch(() => ({ error: response.statusText }));
    // A session opened with the API key ends when the server restarts: say how to open another.
    if (response.status === 401) throw new Error("signed out (the server restarted?): reload the page and enter the API key");
    if (!response.ok) throw new Error(body.error || "HTTP " + response.status);
    showPrediction(card, body.predictions[0]);
    return true;
  } catch (error) {
    showError(card, error.message);
    return false;
  }
}

// Photos chosen while others still classify join them: one status line counts them all, and a
// photo the server refused is not counted as classified.
const counts = { pending: 0, classified: 0, refused: 0 };

function photos(count) {
  return `${count} photo${count === 1 ? "" : "s"}`;
}

function showCounts() {
  statusLine.textContent = counts.pending
    ? `Classifying ${photos(counts.pending)}…`
    : `Classified ${photos(counts.classified)}.` + (counts.refused ? ` ${photos(counts.refused)} refused: each says why.` : "");
}

async function classifyAll(files) {
  const queue = Array.from(files).map((file) => [file, newCard(file)]);
  if (!counts.pending) Object.assign(counts, { classified: 0, refused: 0 });
  counts.pending += queue.length;
  showCounts();
  async function worker() {
    while (queue.length) {
      const [file, card] = queue.shift();
      const classified = await classify(file, card);
      counts.pending -= 1;
      counts[classified ? "classified" : "refused"] += 1;
      showCounts();
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL, queue.length) }, worker));
}

input.addEventListener("change", () => {
  if (input.files.length) classifyAll(input.files);
  input.value = ""; // choosing the same file again still fires "change"
});

for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  const files = event.dataTransfer.files; // not filtered: the server says why a file is refused
  if (files.length) classifyAll(files);
});

function showModel(meta) {
  const split = meta.accuracy_split || "test";
  const value = meta.accuracy == null ? meta.test_accuracy : meta.accuracy;
  const accuracy = value == null ? "" : `, ${split} accuracy ${percent(value)}`;
  document.getElementById("model").textContent =
    `Model ${meta.model || "?"} (version ${meta.model_version || "?"}${accuracy})`;
  const names = meta.class_names || [];
  document.getElementById("classes").textContent = names.length
    ? `${names.length} classes: ${names.join(", ")}` : "";
  if (meta.preprocessing) document.getElementById("preprocessing").textContent = ": " + meta.preprocessing;
  inputKind = meta.kind || "fashion-mnist";
  const shape = meta.input_shape || [];
  if (shape.length >= 2) {
    inputCaption = `model input ${shape[0]}×${shape[1]}${inputKind === "photo" ? " RGB" : ""}`;
    for (const caption of document.querySelectorAll(".input-caption")) caption.textContent = inputCaption;
  }
}

fetch("/v1/models/apparel/metadata")
  .then((response) => response.json())
  .then(showModel)
  .catch(() => {});
