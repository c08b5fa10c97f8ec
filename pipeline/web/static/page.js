// The page: polls /api/live every second, loads the comparison, and sends dropped scans to /api/predict.
"use strict";

const LIVE_STAGES = ["head", "fine-tuning"];
const LIVE_METRICS = ["loss", "accuracy"];
const EMBED = {renderer: "svg", actions: false};
const views = {};  // "stage metric" -> {view, element, signature}
let compareState = null;

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  return node;
}

function curveSpec(stage, metric) {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v5.json",
    title: `${stage}: ${metric}`, width: 420, height: 240,
    data: {name: "rows"},
    mark: {type: "line", point: true},
    encoding: {
      x: {field: "step", type: "quantitative", title: "epoch", axis: {tickMinStep: 1}},
      y: {field: "value", type: "quantitative", title: metric},
      color: {field: "backbone", type: "nominal"},
      strokeDash: {field: "split", type: "nominal", title: "split"},
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
    const mine = rows.filter((row) => row.stage === stage && row.metric === metric);
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
}

let polling = false;
async function poll() {
  if (polling) return;
  polling = true;
  try {
    const answer = await (await fetch("/api/live")).json();
    drawStages(answer.stages);
    await drawCurves(answer.curves);
  } catch (error) {
    document.getElementById("stage-counts").textContent = `cannot reach the server (${error.message})`;
  } finally {
    polling = false;
  }
}

async function loadComparison() {
  const {report, experiments} = await (await fetch("/api/comparison")).json();
  const warnings = document.getElementById("warnings");
  warnings.replaceChildren(...report.warnings.map((html) => {
    const box = element("div", undefined, {class: "warning"});
    box.innerHTML = html;  // rendered by the server from the report, raw HTML disabled
    return box;
  }));
  const body = document.getElementById("report");
  body.innerHTML = report.html;
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
    width: 420, height: {step: 18},
    data: {values: rows},
    mark: "bar",
    encoding: {
      y: {field: "model", type: "nominal", sort: null, title: null},
      x: {field: "probability", type: "quantitative", stack: "zero", scale: {domain: [0, 1]}},
      color: {field: "class", type: "nominal", sort: null},
      order: {field: "order"},
      tooltip: [{field: "model"}, {field: "class"}, {field: "probability", format: ".3f"}],
    },
  };
}

function drawPrediction(result) {
  const box = element("div", undefined, {class: "prediction", "data-file": result.file});
  box.append(element("h3", result.file));
  if (result.error) {
    box.append(element("p", result.error, {class: "error"}));
    return box;
  }
  const models = Object.keys(result.probabilities);
  const classes = Object.keys(result.probabilities[models[0]]);
  const rows = models.flatMap((model) => classes.map((name, order) =>
    ({model, class: name, order, probability: result.probabilities[model][name]})));
  const chart = element("div");
  box.append(chart);
  vegaEmbed(chart, barSpec(rows), EMBED);
  const table = element("table");
  const head = element("tr");
  head.append(element("th", "model"), ...classes.map((name) => element("th", name)));
  table.append(head, ...models.map((model) => {
    const line = element("tr", undefined, {"data-model": model});
    line.append(element("td", model), ...classes.map((name) =>
      element("td", result.probabilities[model][name].toFixed(3), {"data-class": name})));
    return line;
  }));
  box.append(table);
  return box;
}

async function upload(files) {
  const out = document.getElementById("predictions");
  if (!files.length) return;
  const form = new FormData();
  for (const file of files) form.append("file", file);
  out.replaceChildren(element("p", `predicting ${files.length} scan(s)...`));
  const response = await fetch("/api/predict", {method: "POST", body: form});
  const answer = await response.json();
  if (answer.files) out.replaceChildren(...answer.files.map(drawPrediction));
  else out.replaceChildren(element("p", `${response.status}: ${answer.detail}`, {class: "error"}));
}

const drop = document.getElementById("drop");
const input = document.getElementById("files");
input.addEventListener("change", () => upload([...input.files]));
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  upload([...event.dataTransfer.files]);
});

loadComparison();
poll();
setInterval(poll, 1000);
