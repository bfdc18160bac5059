// The draw-a-digit page: strokes on #pad (Pointer Events), a throttled live prediction through
// POST /api/predict (the canvas as a PNG), the answer drawn as bars, the input as the model saw
// it, and for a CNN the first layer's feature maps. No library, nothing loaded from elsewhere.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const seen = document.getElementById("seen");
const widthInput = document.getElementById("width");
const modelSelect = document.getElementById("model");
const digitEl = document.getElementById("digit");
const statusEl = document.getElementById("status");
const THROTTLE_MS = 150;

let models = [];
let strokes = [];          // each: {width, points: [[x, y], ...]} in canvas pixels
let current = null;
let lastSent = 0, timer = null, seq = 0;
// for tests and scripts: how many predictions were asked for and answered
window.nnscratch = { requested: 0, answered: 0, last: null };

function redraw() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = "#000";
  ctx.fillStyle = "#000";
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const s of strokes) {
    ctx.lineWidth = s.width;
    if (s.points.length === 1) {
      const [x, y] = s.points[0];
      ctx.beginPath(); ctx.arc(x, y, s.width / 2, 0, 2 * Math.PI); ctx.fill();
      continue;
    }
    ctx.beginPath();
    ctx.moveTo(...s.points[0]);
    for (const p of s.points.slice(1)) ctx.lineTo(...p);
    ctx.stroke();
  }
}

function toCanvas(ev) {
  const r = pad.getBoundingClientRect();
  return [(ev.clientX - r.left) * pad.width / r.width, (ev.clientY - r.top) * pad.height / r.height];
}

pad.addEventListener("pointerdown", (ev) => {
  if (ev.button !== 0 && ev.pointerType === "mouse") return;
  pad.setPointerCapture(ev.pointerId);
  current = { width: Number(widthInput.value), points: [toCanvas(ev)] };
  strokes.push(current);
  redraw();
  ev.preventDefault();
});
pad.addEventListener("pointermove", (ev) => {
  if (!current) return;
  const events = ev.getCoalescedEvents ? ev.getCoalescedEvents() : [ev];
  for (const e of (events.length ? events : [ev])) current.points.push(toCanvas(e));
  redraw();
  schedule();
});
function endStroke() {
  if (!current) return;
  current = null;
  predictNow();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

// live prediction, at most one request every THROTTLE_MS while drawing, and one at the end
function schedule() {
  const wait = lastSent + THROTTLE_MS - performance.now();
  if (wait <= 0) predictNow();
  else if (!timer) timer = setTimeout(() => { timer = null; predictNow(); }, wait);
}

async function predictNow() {
  if (timer) { clearTimeout(timer); timer = null; }
  lastSent = performance.now();
  const mine = ++seq;
  window.nnscratch.requested = mine;
  if (!strokes.length || !modelSelect.value) { showEmpty(); window.nnscratch.answered = mine; return; }
  const chosen = models.find((m) => m.name === modelSelect.value);
  const body = { model: modelSelect.value, image: pad.toDataURL("image/png"),
                 feature_maps: Boolean(chosen && chosen.feature_maps) };
  let answer = null, error = null;
  try {
    const resp = await fetch("/api/predict", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const data = await resp.json();
    if (resp.ok) answer = data; else error = typeof data.detail === "string" ? data.detail : "could not read the drawing";
  } catch (e) {
    error = "the server did not answer";
  }
  if (mine !== seq) return;  // a newer drawing was sent meanwhile
  if (answer) show(answer); else { showEmpty(); statusEl.textContent = error; }
  window.nnscratch.last = answer;
  window.nnscratch.answered = mine;
}

function showEmpty() {
  digitEl.textContent = "–";
  digitEl.dataset.state = "empty";
  statusEl.textContent = "Draw a digit in the box.";
  setBars(new Array(10).fill(0));
  const c = seen.getContext("2d");
  c.fillStyle = "#000"; c.fillRect(0, 0, seen.width, seen.height);
  document.getElementById("features").replaceChildren();
}

function show(a) {
  digitEl.textContent = String(a.digit);
  digitEl.dataset.state = "ok";
  const p = a.probabilities[a.digit];
  statusEl.textContent = `${(100 * p).toFixed(1)}% sure (${a.model})`;
  setBars(a.probabilities);
  drawGrid(seen, a.input);
  const box = document.getElementById("features");
  box.replaceChildren();
  for (const [i, map] of (a.feature_maps || []).entries()) {
    const c = document.createElement("canvas");
    c.setAttribute("aria-label", `feature map ${i + 1}`);
    drawGrid(c, map, true);
    box.append(c);
  }
}

// a 2-D array drawn as grey pixels (white = 1); scale: stretch each map to its own range
function drawGrid(canvas, grid, scale = false) {
  const h = grid.length, w = grid[0].length;
  canvas.width = w; canvas.height = h;
  let lo = 0, hi = 1;
  if (scale) {
    lo = Math.min(...grid.flat()); hi = Math.max(...grid.flat());
    if (hi - lo < 1e-9) hi = lo + 1;
  }
  const c = canvas.getContext("2d");
  const img = c.createImageData(w, h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const v = Math.round(255 * Math.min(1, Math.max(0, (grid[y][x] - lo) / (hi - lo))));
    const k = 4 * (y * w + x);
    img.data[k] = img.data[k + 1] = img.data[k + 2] = v; img.data[k + 3] = 255;
  }
  c.putImageData(img, 0, 0);
}

function setBars(probs) {
  const best = probs.indexOf(Math.max(...probs));
  document.querySelectorAll("#bars li").forEach((li, k) => {
    const v = probs[k] || 0;
    li.querySelector(".fill").style.width = `${(100 * v).toFixed(1)}%`;
    li.querySelector(".pct").textContent = `${(100 * v).toFixed(1)}%`;
    li.classList.toggle("best", v > 0 && k === best);
    li.dataset.p = String(v);
  });
}

function buildBars() {
  const ol = document.getElementById("bars");
  for (let k = 0; k < 10; k++) {
    const li = document.createElement("li");
    li.innerHTML = `<span>${k}</span><span class="track"><span class="fill"></span></span><span class="pct">0.0%</span>`;
    ol.append(li);
  }
}

function showReport() {
  const m = models.find((x) => x.name === modelSelect.value);
  const acc = document.getElementById("accuracy");
  const table = document.getElementById("confusion");
  table.replaceChildren();
  if (!m) return;
  const [h, w] = m.input_shape;
  document.getElementById("seen-caption").textContent = `what the model sees (${h}x${w})`;
  document.getElementById("features-section").hidden = !m.feature_maps;
  if (m.test_accuracy === null) {
    acc.textContent = `${m.name}: no run report for this model (${m.report}), so no test accuracy.`;
    return;
  }
  acc.textContent = `${m.name} (${m.architecture}, ${m.n_params.toLocaleString()} parameters): ` +
    `test accuracy ${(100 * m.test_accuracy).toFixed(2)}%. Confusion matrix: rows are true digits, columns predicted.`;
  if (!m.confusion_matrix) return;
  const head = table.createTHead().insertRow();
  head.append(document.createElement("th"));
  m.confusion_matrix[0].forEach((_, j) => { const th = document.createElement("th"); th.textContent = j; head.append(th); });
  const body = table.createTBody();
  m.confusion_matrix.forEach((row, i) => {
    const tr = body.insertRow();
    const th = document.createElement("th"); th.textContent = i; th.scope = "row"; tr.append(th);
    row.forEach((v, j) => {
      const td = tr.insertCell();
      td.textContent = v;
      if (i === j) td.className = "diag"; else if (v > 0) td.className = "off";
    });
  });
}

document.getElementById("clear").addEventListener("click", () => { strokes = []; redraw(); predictNow(); });
document.getElementById("undo").addEventListener("click", () => { strokes.pop(); redraw(); predictNow(); });
modelSelect.addEventListener("change", () => { showReport(); predictNow(); });
document.addEventListener("keydown", (ev) => {
  if ((ev.ctrlKey || ev.metaKey) && ev.key === "z") { ev.preventDefault(); strokes.pop(); redraw(); predictNow(); }
});

async function start() {
  buildBars();
  redraw();
  showEmpty();
  try {
    models = await (await fetch("/api/models")).json();
  } catch (e) {
    statusEl.textContent = "could not load the models";
    return;
  }
  for (const m of models) {
    const o = document.createElement("option");
    o.value = m.name;
    o.textContent = `${m.name} (${m.input_shape[0]}x${m.input_shape[1]})`;
    modelSelect.append(o);
  }
  showReport();
  document.body.dataset.ready = "1";
}
start();
