// The demo page: pick or drop an image, set a budget, classify through POST /v1/classify/stream and show
// every exit as it arrives, then the answer. Falls back to POST /v1/classify (the answer only) on a server
// without the stream route (404/405).
"use strict";

const STREAM_URL = "/v1/classify/stream";
const CLASSIFY_URL = "/v1/classify";
const SLIDER_MIN_MS = 0.5;
const SLIDER_MAX_MS = 1000;

const $ = (id) => document.getElementById(id);
const page = { image: null, imageName: "", maxBudgetMs: SLIDER_MAX_MS, charts: null };

// -- budget: a logarithmic slider and a number field, kept in step ------------------------------------

function sliderToMs(position) {
  const low = Math.log10(SLIDER_MIN_MS), high = Math.log10(page.maxBudgetMs);
  return +(10 ** (low + (position / 1000) * (high - low))).toPrecision(2);
}

function msToSlider(ms) {
  const low = Math.log10(SLIDER_MIN_MS), high = Math.log10(page.maxBudgetMs);
  return Math.round(((Math.log10(Math.max(ms, SLIDER_MIN_MS)) - low) / (high - low)) * 1000);
}

function setUpBudget() {
  const range = $("budget-range"), field = $("budget-ms");
  range.value = msToSlider(+field.value);
  range.addEventListener("input", () => (field.value = sliderToMs(+range.value)));
  field.addEventListener("input", () => (range.value = msToSlider(+field.value)));
}

// -- the image: a shipped sample, a chosen file or a dropped one -----------------------------------------

function useImage(blob, name) {
  page.image = blob;
  page.imageName = name;
  $("preview").src = URL.createObjectURL(blob);
  $("preview").alt = `the image to classify: ${name}`;
  $("preview-name").textContent = name;
  $("classify").disabled = false;
}

async function loadSamples() {
  const { samples } = await (await fetch("/v1/samples")).json();
  const box = $("samples");
  for (const sample of samples) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sample";
    button.dataset.sample = sample.name;
    button.setAttribute("aria-pressed", "false");
    const img = document.createElement("img");
    img.src = sample.url;
    img.alt = "";
    img.width = img.height = 48;
    button.append(img, sample.name);
    button.addEventListener("click", async () => {
      for (const other of box.querySelectorAll("button")) other.setAttribute("aria-pressed", "false");
      button.setAttribute("aria-pressed", "true");
      useImage(await (await fetch(sample.url)).blob(), `${sample.name} (sample)`);
    });
    box.append(button);
  }
}

function setUpDrop() {
  const zone = $("drop-zone");
  // a file dropped beside the zone would make the browser leave the page to show it
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
  $("file-input").addEventListener("change", (e) => e.target.files[0] && useImage(e.target.files[0], e.target.files[0].name));
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) useImage(file, file.name);
  });
}

// -- the request and its answer -----------------------------------------------------------------------

function setState(state, status) {
  $("answer").dataset.state = state;
  $("answer-status").textContent = status;
}

function addExitRow(event, final) {
  const row = document.createElement("tr");
  row.dataset.exit = event.exit;
  if (final) row.className = "final";
  const cells = [
    final ? `${event.exit} ✓` : `${event.exit}`,
    event.exit_name,
    event.label,
    `${(event.confidence * 100).toFixed(1)} %`,
    event.latency_ms.toFixed(2),
    event.mflops.toFixed(1),
  ];
  for (const text of cells) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
  $("exits").querySelector("tbody").append(row);
}

function showAnswer(answer, transport) {
  const box = $("answer");
  box.dataset.exit = answer.exit;
  box.dataset.transport = transport;
  $("answer-label").textContent = answer.label;
  $("answer-exit").textContent = `${answer.exit} (${answer.exit_name}); exits run 0–${answer.num_exits - 1}`;
  $("answer-confidence").textContent = `${(answer.confidence * 100).toFixed(1)} %`;
  const met = answer.budget_met ? "within" : "over";
  $("answer-latency").textContent = `${answer.latency_ms.toFixed(2)} ms (${met} the ${answer.budget_ms} ms budget)`;
  $("answer-stopped").textContent = answer.stopped_by;
  const note = transport === "stream" ? "" : " (this server has no stream route: the answer only)";
  setState("done", `Answered from exit ${answer.exit}${note}.`);
  page.charts.addAnswer(answer);
}

async function showRefusal(response) {
  let text = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    text = `${body.error}: ${body.detail}`;
  } catch {
    // not JSON: the status says enough
  }
  setState("error", `Refused — ${text}`);
}

// read the event stream; true once the final event has arrived
async function readStream(response) {
  let finished = false;
  const parser = new SSEParser(({ event, data }) => {
    const payload = JSON.parse(data);
    if (event === "exit") addExitRow(payload, false);
    else if (event === "final") {
      finished = true;
      addExitRow(payload, true);
      showAnswer(payload, "stream");
    } else if (event === "error") {
      finished = true;
      setState("error", `Failed — ${payload.error}: ${payload.detail}`);
    }
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.push(value);
  }
  parser.end();
  return finished;
}

function form() {
  const body = new FormData();
  body.append("image", page.image, page.imageName);
  body.append("budget_ms", String(+$("budget-ms").value));
  return body;
}

async function classify() {
  $("classify").disabled = true;
  $("exits").querySelector("tbody").replaceChildren();
  for (const id of ["answer-label", "answer-exit", "answer-confidence", "answer-latency", "answer-stopped"]) {
    $(id).textContent = "–";
  }
  delete $("answer").dataset.exit;
  setState("running", "Running…");
  try {
    let response = await fetch(STREAM_URL, { method: "POST", body: form() });
    if (response.status === 404 || response.status === 405) {
      response = await fetch(CLASSIFY_URL, { method: "POST", body: form() });
      if (!response.ok) return await showRefusal(response);
      const answer = await response.json();
      addExitRow(answer, true);
      return showAnswer(answer, "classify");
    }
    if (!response.ok) return await showRefusal(response);
    if (!(await readStream(response))) setState("error", "The stream ended without an answer.");
  } catch (err) {
    setState("error", `The request failed: ${err.message}`);
  } finally {
    $("classify").disabled = false;
  }
}

// -- start ---------------------------------------------------------------------------------------------

async function describeModel() {
  const model = await (await fetch("/v1/model")).json();
  const serving = model.serving;
  page.maxBudgetMs = Math.min(SLIDER_MAX_MS, serving.max_budget_ms);
  $("budget-ms").max = serving.max_budget_ms;
  $("model-line").textContent =
    `${model.name}: ${model.num_exits} exits (0 … ${model.num_exits - 1}), ${model.classes.length} classes, on ${model.device}.`;
  $("budget-hint").textContent =
    `The smallest budget an idle server meets now is about ${serving.idle_floor_ms.toFixed(2)} ms ` +
    "(serving.idle_floor_ms); below it the server refuses the request (422 budget_too_small).";
}

async function main() {
  page.charts = new LiveCharts({
    profileCanvas: $("profile-chart"),
    answersCanvas: $("answers-chart"),
    legend: $("profile-legend"),
  });
  setUpDrop();
  $("classify").addEventListener("click", classify);
  await describeModel();
  setUpBudget();
  await loadSamples();
  page.charts.start();
  document.body.dataset.ready = "true";
}

main().catch((err) => setState("error", `The page could not start: ${err.message}`));
