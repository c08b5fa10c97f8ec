// The page: sends chosen scans to /api/predict?explain=1 (each model's probabilities and Grad-CAM map), polls
// /api/live (every second while a stage runs, slower when idle, not while hidden), and loads the comparison. Every
// call to the server shows its failure and a way to retry.
"use strict";

const LIVE_STAGES = ["head", "fine-tuning"];
const LIVE_METRICS = ["loss", "accuracy"];
const SPLITS = ["train", "val"];  // drawn solid and dashed
const POLL_RUNNING_MS = 1000;
const POLL_IDLE_MAX_MS = 10000;  // idle, the delay doubles up to this
const PREDICT_TIMEOUT_MS = 120000;
const EMBED = {renderer: "svg", actions: false};
const views = {};  // "stage metric" -> {view, element, signature}
let compareState = null;
let pollDelay = POLL_RUNNING_MS;
let pollTimer = null;

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

// The JSON of a call to the server, or an Error whose message a person can read (network, status, not JSON).
async function callServer(url, options = {}) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (error) {
    throw new Error(error.name === "TimeoutError" ? "the server did not answer in time"
                                                   : "cannot reach the server (is it still running?)");
  }
  let answer;
  try {
    answer = await response.json();
  } catch {
    throw new Error(`the server answered ${response.status} ${response.statusText}, not the data expected`);
  }
  if (!response.ok) throw new Error(`${response.status}: ${answer.detail ?? response.statusText}`);
  return answer;
}

// A visible failure with a button that calls `retry`.
function failure(message, retry) {
  const box = element("div", undefined, {class: "failure", role: "alert"});
  const button = element("button", "Try again", {type: "button"});
  button.addEventListener("click", retry);
  box.append(element("p", message, {class: "error"}), button);
  return box;
}

function curveSpec(stage, metric) {
  const loss = metric === "loss";
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: `${stage}: ${metric}`, width: "container", height: 240, autosize: {type: "fit", contains: "padding"},
    data: {name: "rows"},
    mark: {type: "line", point: true},
    encoding: {
      x: {field: "step", type: "quantitative", title: "epoch", scale: {nice: false},
          axis: {tickMinStep: 1, format: "d", labelExpr: "datum.value % 1 ? '' : datum.label"}},  // epochs only
      y: {field: "value", type: "quantitative", title: loss ? "loss (log scale)" : metric,
          scale: loss ? {type: "log"} : {domain: [0, 1]}},  // a diverging loss stays on the chart, the rest readable
      color: {field: "backbone", type: "nominal", legend: {labelLimit: 0}},
      strokeDash: {field: "split", type: "nominal", title: "split", scale: {domain: SPLITS, range: [[1, 0], [6, 4]]},
                   legend: {symbolType: "stroke", symbolSize: 400, symbolStrokeWidth: 2, labelLimit: 0,
                           encode: {symbols: {update: {stroke: {value: "#444"}}}}}},
      tooltip: [{field: "backbone"}, {field: "split"}, {field: "step"}, {field: "value", format: ".3f"}],
    },
  };
}

async function ensureCharts() {
  const holder = document.getElementById("curves");
  for (const stage of LIVE_STAGES) {
    for (const metric of LIVE_METRICS) {
      const key = `${stage} ${metric}`;
      if (views[key]) continue;
      const div = element("div", undefined, {class: "curve", "data-stage": stage, "data-metric": metric,
                                             "data-points": "0", "data-last-step": ""});
      holder.append(div);
      views[key] = {element: div, signature: "", view: (await vegaEmbed(div, curveSpec(stage, metric), EMBED)).view};
    }
  }
}

async function drawCurves(rows) {
  await ensureCharts();
  for (const [key, chart] of Object.entries(views)) {
    const [stage, metric] = key.split(" ");
    const mine = rows.filter((row) => row.stage === stage && row.metric === metric
                                      && (metric !== "loss" || row.value > 0));
    const signature = JSON.stringify(mine);
    if (signature === chart.signature) continue;
    chart.signature = signature;
    await chart.view.data("rows", mine).runAsync();
    chart.element.dataset.points = String(mine.length);
    chart.element.dataset.lastStep = mine.length ? String(Math.max(...mine.map((row) => row.step))) : "";
  }
}

function drawStages(stages) {
  const list = document.getElementById("stages");
  list.replaceChildren(...stages.map(({stage, state}) => element("li", stage, {class: state, "data-state": state,
                                                                               title: state})));
  const counts = {done: 0, running: 0, pending: 0};
  stages.forEach(({state}) => { counts[state] += 1; });
  document.getElementById("stage-counts").textContent =
    `${counts.done} done, ${counts.running} running, ${counts.pending} pending`;
  const compare = (stages.find(({stage}) => stage === "compare") || {}).state;
  if (compareState !== null && compare !== compareState && compare === "done") loadComparison();
  compareState = compare;
  return counts.running > 0;
}

async function poll() {
  clearTimeout(pollTimer);
  if (document.hidden) return;  // visibilitychange polls again
  let running = false;
  try {
    const answer = await callServer("/api/live");
    running = drawStages(answer.stages);
    await drawCurves(answer.curves);
  } catch (error) {
    document.getElementById("stage-counts").textContent = `${error.message}; trying again`;
  }
  pollDelay = running ? POLL_RUNNING_MS : Math.min(2 * pollDelay, POLL_IDLE_MAX_MS);
  document.body.dataset.pollMs = String(pollDelay);
  pollTimer = setTimeout(poll, pollDelay);
}

async function loadComparison() {
  const body = document.getElementById("report");
  let answer;
  try {
    answer = await callServer("/api/comparison");
  } catch (error) {
    body.replaceChildren(failure(`The comparison did not load: ${error.message}`, loadComparison));
    return;
  }
  const {report, experiments} = answer;
  const warnings = document.getElementById("warnings");
  warnings.replaceChildren(...report.warnings.map((html) => {
    const box = element("div", undefined, {class: "warning"});
    box.innerHTML = html;  // rendered by the server from the report, raw HTML disabled
    return box;
  }));
  body.innerHTML = report.html;
  for (const table of body.querySelectorAll("table")) {
    const scroll = element("div", undefined, {class: "scroll"});
    table.replaceWith(scroll);
    scroll.append(table);
  }
  if (report.note) body.replaceChildren(element("p", report.note));
  const table = document.getElementById("experiments");
  table.tHead.replaceChildren(element("tr"));
  table.tHead.rows[0].append(element("th", "experiment"), ...experiments.columns.map((name) => element("th", name)));
  table.tBodies[0].replaceChildren(...experiments.rows.map((row) => {
    const line = element("tr", undefined, {"data-rev": row.rev});
    line.append(element("td", row.name), ...experiments.columns.map((name) => {
      const value = row.values[name];
      return element("td", typeof value === "number" ? (Number.isInteger(value) ? value : value.toPrecision(3))
                                                     : (value ?? ""));
    }));
    return line;
  }));
  document.getElementById("experiments-note").textContent = experiments.note;
}

function barSpec(rows) {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    width: "container", height: {step: 18}, autosize: {type: "fit-x", contains: "padding"},
    data: {values: rows},
    mark: "bar",
    encoding: {
      y: {field: "model", type: "nominal", sort: null, title: null, axis: {labelLimit: 0}},
      x: {field: "probability", type: "quantitative", stack: "zero", scale: {domain: [0, 1]}},
      color: {field: "class", type: "nominal", sort: null, legend: {labelLimit: 0}},
      order: {field: "order"},
      tooltip: [{field: "model"}, {field: "class"}, {field: "probability", format: ".3f"}],
    },
  };
}

// One model's answer: its name, its most likely class and that class's probability. Each model gets its own
// element (data-model), where more about that model's answer can go.
function modelAnswer(model, probabilities) {
  const [top, probability] = Object.entries(probabilities).reduce((best, entry) => (entry[1] > best[1] ? entry : best));
  const line = element("li", undefined, {class: model.startsWith("ensemble_") ? "model-answer ensemble" : "model-answer",
                                         "data-model": model});
  line.append(element("span", model, {class: "model"}), element("strong", top, {class: "top-class"}),
              element("span", probability.toFixed(2), {class: "probability"}));
  return {line, top, probability};
}

// Each backbone's Grad-CAM map over the scan as that model saw it, with a toggle per model that hides and shows it.
function drawMaps(explanations) {
  const strip = element("div", undefined, {class: "maps"});
  strip.append(element("p", "Where each model looks (Grad-CAM, for its most likely class):", {class: "maps-note"}));
  for (const [model, shown] of Object.entries(explanations)) {
    const figure = element("figure", undefined, {class: "gradcam", "data-model": model});
    const stack = element("div", undefined, {class: "stack"});
    stack.append(element("img", undefined, {class: "seen", src: shown.scan, alt: `the scan as ${model} saw it`}),
                 element("img", undefined, {class: "overlay", src: shown.overlay,
                                            alt: `where ${model} sees ${shown.class}`}));
    const toggle = element("input", undefined, {type: "checkbox", class: "toggle"});
    toggle.checked = true;
    toggle.addEventListener("change", () => figure.classList.toggle("map-hidden", !toggle.checked));
    const label = element("label");
    label.append(toggle, " map");
    const caption = element("figcaption");
    caption.append(element("span", model, {class: "model"}), " ", element("strong", shown.class), label);
    figure.append(stack, caption);
    strip.append(figure);
  }
  return strip;
}

function drawPrediction(result, file) {
  const box = element("article", undefined, {class: "prediction", "data-file": result.file});
  box.append(element("h3", result.file));
  if (result.error) {
    box.append(element("p", result.error, {class: "error"}));
    return box;
  }
  const models = Object.keys(result.probabilities);
  const classes = Object.keys(result.probabilities[models[0]]);
  const answers = models.map((model) => modelAnswer(model, result.probabilities[model]));
  const ensemble = models.findLastIndex((model) => model.startsWith("ensemble_"));
  const lead = answers[ensemble >= 0 ? ensemble : 0];
  const answer = element("div", undefined, {class: "answer"});
  if (file) {
    const scan = element("img", undefined, {class: "scan", alt: `the scan ${result.file}`});
    scan.src = URL.createObjectURL(file);
    scan.addEventListener("load", () => URL.revokeObjectURL(scan.src), {once: true});
    answer.append(scan);
  }
  const summary = element("div");
  summary.append(element("p", `Most likely: ${lead.top}, ${lead.probability.toFixed(2)} (${models[ensemble >= 0 ? ensemble : 0]})`,
                         {class: "headline"}));
  const tops = element("ul", undefined, {class: "tops"});
  tops.append(...answers.map(({line}) => line));
  summary.append(tops);
  const details = element("div", undefined, {class: "details"});
  const table = element("table");
  const head = element("tr");
  head.append(element("th", "model"), ...classes.map((name) => element("th", name)));
  table.append(head, ...models.map((model) => {
    const line = element("tr", undefined, {"data-model": model});
    line.append(element("td", model), ...classes.map((name) =>
      element("td", result.probabilities[model][name].toFixed(3), {"data-class": name})));
    return line;
  }));
  const scroll = element("div", undefined, {class: "scroll"});
  scroll.append(table);
  const chart = element("div", undefined, {class: "bars"});
  chart.spec = barSpec(models.flatMap((model) => classes.map((name, order) =>
    ({model, class: name, order, probability: result.probabilities[model][name]}))));
  details.append(scroll, chart);
  answer.append(summary, ...(result.explanations ? [drawMaps(result.explanations)] : []), details);
  box.append(answer);
  return box;
}

async function upload(files) {
  const out = document.getElementById("predictions");
  if (!files.length) return;
  const form = new FormData();
  for (const file of files) form.append("file", file);
  out.replaceChildren(element("p", `predicting ${files.length} scan(s)...`, {class: "busy"}));
  let answer;
  try {
    answer = await callServer("/api/predict?explain=1", {method: "POST", body: form,
                                               signal: AbortSignal.timeout(PREDICT_TIMEOUT_MS)});
  } catch (error) {
    out.replaceChildren(failure(`No prediction: ${error.message}`, () => upload(files)));
    return;
  }
  out.replaceChildren(...answer.files.map((result, index) => drawPrediction(result, files[index])));
  for (const chart of out.querySelectorAll(".bars")) vegaEmbed(chart, chart.spec, EMBED);  // sized once on the page
}

const drop = document.getElementById("drop");
const input = document.getElementById("files");
input.addEventListener("change", () => {
  const files = [...input.files];
  input.value = "";  // choosing the same file again is a change too
  upload(files);
});
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  upload([...event.dataTransfer.files]);
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) {
    pollDelay = POLL_RUNNING_MS / 2;
    poll();
  }
});

loadComparison();
pollDelay = POLL_RUNNING_MS / 2;  // the first wait after loading is a second
poll();
