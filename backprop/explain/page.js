"use strict";
// Formats and draws the engine's numbers (the JSON above); computes no derivative.
(function () {
  const doc = JSON.parse(document.getElementById("backprop-trace").textContent);
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const depth = doc.sizes.length - 1;
  const small = doc.sizes.reduce((a, b) => a + b, 0) <= 40;
  let current = 0;
  let step = null; // the training step shown; null: the traced example

  function fmt(v) {
    if (v === null) return "\u2014";
    if (typeof v !== "number") return String(v);
    if (v === 0 || (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e5)) return String(+v.toPrecision(6));
    return v.toExponential(4);
  }
  function el(tag, attributes, text) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attributes || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function numbers() { return step === null ? doc : doc.steps[step].trace; }
  function valueOf(stage) {
    const d = numbers();
    const table = { input: d, parameters: d.parameters, forward: d.forward, backward: d.backward, updated: d.updated };
    if (stage.section === "loss") return d.loss_value;
    const found = table[stage.section] && table[stage.section][stage.key];
    return found === undefined ? stage.value : found;
  }
  // The values of the symbols on a formula's right-hand side: the numbers put in.
  function operands(stage) {
    const d = numbers(), found = [];
    const rhs = stage.formula.split("=").slice(1).join("=");
    for (const m of rhs.matchAll(/\b(dW|db|dz|da|W|b|z|a)\[(\d+)\]|\b(x|y)\b/g)) {
      const symbol = m[3] || `${m[1]}[${m[2]}]`, key = m[3] || `${m[1]}${m[2]}`;
      if (symbol === stage.symbol || found.some(([s]) => s === symbol)) continue;
      const table = m[3] ? d : m[1].startsWith("d") ? d.backward : "Wb".includes(m[1]) ? d.parameters : d.forward;
      const own = doc.stages.find((s) => s.key === key && "value" in s);
      const value = table[key] !== undefined ? table[key] : own && own.value;
      if (value !== undefined) found.push([symbol, value]);
    }
    return found;
  }
  function numericalOf(stage) {
    return "checked" in stage ? numbers().numerical[stage.key] : null;
  }
  const CORNER = 8; // a larger matrix shows its corners, its shape and its norm (as the text page)
  const GAP = {}; // where a large matrix's middle rows or columns are left out
  function cut(list) {
    return list.length <= CORNER ? list : [...list.slice(0, 3), GAP, ...list.slice(-2)];
  }
  function matrix(value) {
    const rows = Array.isArray(value) ? (Array.isArray(value[0]) ? value : [value]) : [[value]];
    const box = el("div");
    const table = el("table");
    for (const row of cut(rows)) {
      const tr = el("tr");
      for (const v of cut(row === GAP ? rows[0] : row)) {
        tr.appendChild(el("td", {}, v === GAP ? "\u2026" : row === GAP ? "\u22ee" : fmt(v)));
      }
      table.appendChild(tr);
    }
    box.appendChild(table);
    if (rows.length > CORNER || rows[0].length > CORNER) {
      const all = rows.flat().filter((v) => v !== null);
      const some = all.length < rows.length * rows[0].length ? ` (of the ${all.length} entries given)` : "";
      box.appendChild(el("p", { class: "formula" }, `shape ${rows.length}x${rows[0].length}, norm ${fmt(Math.hypot(...all))}${some}`));
    }
    return box;
  }
  function layerOf(key) {
    const m = /(\d+)$/.exec(key);
    return m ? +m[1] : key === "x" ? 0 : key === "y" || key === "loss_value" ? depth : null;
  }

  // -- the network ------------------------------------------------------------------
  function drawNetwork() {
    const box = $("network");
    box.textContent = "";
    const d = numbers();
    if (doc.image) box.appendChild(picture(d.x));
    const width = 140 * doc.sizes.length + 40;
    const tallest = Math.max(...doc.sizes);
    const height = small ? 70 * tallest + 40 : 160;
    const svg = el("svg:svg", { viewBox: `0 0 ${width} ${height}`, width: width, role: "group", "aria-label": "The network" });
    const xOf = (l) => 40 + 140 * l;
    const yOf = (l, i) => (height - 70 * doc.sizes[l]) / 2 + 70 * i + 35;
    if (!small) {
      doc.sizes.forEach((n, l) => {
        const g = el("svg:g", { class: "block", "data-layer": l });
        g.appendChild(el("svg:rect", { x: xOf(l) - 30, y: 30, width: 90, height: 100, rx: 6 }));
        g.appendChild(el("svg:text", { x: xOf(l) - 22, y: 70 }, l === 0 ? "x" : `a[${l}]`));
        g.appendChild(el("svg:text", { x: xOf(l) - 22, y: 90 }, `${n} values`));
        if (l > 0) g.appendChild(el("svg:text", { x: xOf(l) - 22, y: 110 }, `W ${n}x${doc.sizes[l - 1]}`));
        svg.appendChild(g);
      });
      box.appendChild(svg);
      return;
    }
    for (let l = 1; l <= depth; l++) {
      const W = d.parameters[`W${l}`];
      W.forEach((row, i) => row.forEach((w, j) => {
        const place = `W[${l}][${i + 1},${j + 1}]`;
        const g = el("svg:g", { class: `edge ${w < 0 ? "neg" : "pos"}`, tabindex: 0, role: "button", "data-place": place,
          "data-layer": l, "aria-label": `${place} = ${fmt(w)} (${w < 0 ? "negative" : "positive"}), from ${l === 1 ? "x" : `a[${l - 1}]`}_${j + 1} to z[${l}]_${i + 1}` });
        const line = { x1: xOf(l - 1) + 14, y1: yOf(l - 1, j), x2: xOf(l) - 14, y2: yOf(l, i) };
        g.appendChild(el("svg:line", { ...line, "stroke-width": 1 + Math.min(5, 3 * Math.abs(w)) }));
        g.appendChild(el("svg:line", { ...line, class: "hit" }));
        g.appendChild(el("svg:title", {}, g.getAttribute("aria-label")));
        svg.appendChild(g);
      }));
    }
    doc.sizes.forEach((n, l) => {
      const values = l === 0 ? d.x : d.forward[`a${l}`];
      for (let i = 0; i < n; i++) {
        const g = el("svg:g", { class: "neuron", "data-layer": l });
        g.appendChild(el("svg:circle", { cx: xOf(l), cy: yOf(l, i), r: 14 }));
        g.appendChild(el("svg:text", { x: xOf(l) - 20, y: yOf(l, i) - 18 }, `${l === 0 ? "x" : `a[${l}]`}_${i + 1} = ${fmt(values[i])}`));
        svg.appendChild(g);
        const b = l > 0 && d.parameters[`b${l}`];
        if (b) {
          const place = `b[${l}][${i + 1}]`;
          const h = el("svg:g", { class: "bias", tabindex: 0, role: "button", "data-place": place, "data-layer": l,
            "aria-label": `${place} = ${fmt(b[i])} (${b[i] < 0 ? "negative" : "positive"})` });
          h.appendChild(el("svg:rect", { x: xOf(l) + 16, y: yOf(l, i) + 6, width: 12, height: 12 }));
          h.appendChild(el("svg:text", { x: xOf(l) + 30, y: yOf(l, i) + 16 }, `${b[i] < 0 ? "-" : "+"}b`));
          h.appendChild(el("svg:title", {}, h.getAttribute("aria-label")));
          svg.appendChild(h);
        }
      }
    });
    svg.querySelectorAll("[data-place]").forEach((node) => {
      node.addEventListener("click", () => showChain(node.dataset.place));
      node.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); showChain(node.dataset.place); }
      });
    });
    box.appendChild(svg);
  }

  function picture(x) {
    const [rows, columns] = doc.image;
    const low = Math.min(...x), high = Math.max(...x);
    const svg = el("svg:svg", { viewBox: `0 0 ${columns} ${rows}`, width: 96, role: "img", "aria-label": `The input as a ${rows}x${columns} image` });
    x.forEach((v, k) => {
      const grey = Math.round(255 * (1 - (high === low ? 0 : (v - low) / (high - low))));
      svg.appendChild(el("svg:rect", { x: k % columns, y: Math.floor(k / columns), width: 1, height: 1, fill: `rgb(${grey},${grey},${grey})` }));
    });
    return svg;
  }

  // -- one parameter's chain ---------------------------------------------------------
  let chosen = null;
  function showChain(place) {
    const stepChains = step !== null && doc.steps[step].chains;
    const chain = (stepChains || doc.chains)[place];
    if (!chain) return;
    chosen = place;
    const box = $("chain");
    box.textContent = "";
    box.setAttribute("aria-label", `Chain of derivatives for ${place}`);
    document.querySelectorAll(".chosen").forEach((n) => n.classList.remove("chosen"));
    const node = document.querySelector(`[data-place="${place}"]`);
    if (node) node.classList.add("chosen");
    box.appendChild(el("h3", {}, `dL/d${place}, by the chain rule`));
    if (step !== null) {
      box.appendChild(el("p", {}, stepChains ? `At training step ${step + 1}.` : "At the traced example (this playback is too long to hold every step's chains)."));
    }
    const list = el("ul");
    for (const [label, value] of chain.factors) list.appendChild(el("li", { class: "formula" }, `${label} = ${fmt(value)}`));
    box.appendChild(list);
    if (chain.because.length) {
      box.appendChild(el("p", {}, `where dL/dz[${place.slice(2, place.indexOf("]"))}] comes from:`));
      const inner = el("ul");
      for (const [label, value] of chain.because) inner.appendChild(el("li", { class: "formula" }, value === null ? label : `${label} = ${fmt(value)}`));
      box.appendChild(inner);
    }
    const agrees = Math.abs(chain.gradient - chain.numerical) <= 1e-5 + 1e-3 * Math.abs(chain.numerical);
    box.appendChild(el("p", { class: "formula", "data-role": "product" }, `product = ${fmt(chain.product)}`));
    box.appendChild(el("p", { class: "formula", "data-role": "gradient" }, `the engine's gradient = ${fmt(chain.gradient)}`));
    box.appendChild(el("p", { class: `formula ${agrees ? "ok" : "bad"}`, "data-role": "numerical" },
      `finite difference = ${fmt(chain.numerical)} ${agrees ? "\u2713 agrees" : "\u2717 disagrees"}`));
  }

  // -- the stepper -------------------------------------------------------------------
  function showStage() {
    const stage = doc.stages[current];
    $("status").textContent = `${stage.title}: ${stage.formula}`;
    $("counter").textContent = `stage ${current + 1} of ${doc.stages.length}`;
    const box = $("stage");
    box.textContent = "";
    box.appendChild(el("p", { class: "formula" }, stage.formula));
    const given = operands(stage);
    if (given.length) {
      const put = el("div", { class: "operands", "data-role": "operands" });
      put.appendChild(el("p", {}, "with the numbers put in:"));
      for (const [symbol, v] of given) {
        const row = el("div", { class: "operand", "data-symbol": symbol });
        row.appendChild(el("span", { class: "formula" }, `${symbol} =`));
        row.appendChild(matrix(v));
        put.appendChild(row);
      }
      box.appendChild(put);
    }
    const value = valueOf(stage);
    box.appendChild(el("p", {}, `${stage.symbol} =`));
    const result = matrix(value);
    result.querySelector("table").setAttribute("data-role", "value");
    box.appendChild(result);
    const numerical = numericalOf(stage);
    if (numerical) {
      box.appendChild(el("p", {}, "finite differences, (L(w + eps) - L(w - eps)) / 2 eps:"));
      const check = matrix(numerical);
      check.querySelector("table").setAttribute("data-role", "numerical");
      box.appendChild(check);
      const ok = stage.agrees !== false;
      box.appendChild(el("p", { class: ok ? "ok" : "bad" }, ok ? "\u2713 the engine's gradient agrees" : "\u2717 they disagree"));
    }
    const layer = layerOf(stage.key);
    document.querySelectorAll(".hot").forEach((n) => n.classList.remove("hot"));
    const edges = /^(d?W)\d/.test(stage.key);
    document.querySelectorAll(`#network [data-layer="${layer}"]`).forEach((n) => {
      if (edges === n.classList.contains("edge")) {
        n.classList.add("hot");
        n.querySelectorAll("line:not(.hit), circle, rect").forEach((shape) => shape.classList.add("hot"));
      }
    });
  }
  function move(by) {
    current = Math.min(doc.stages.length - 1, Math.max(0, current + by));
    showStage();
  }

  // -- a 2-D data set: its points, and the class the network gives each cell -----------
  const MARKS = ["circle", "square", "triangle", "diamond"]; // a class is a shape, not only a colour
  const COLOURS = ["#1f5fbf", "#b3541e", "#2a8a3a", "#7a3fb0"];
  function drawData() {
    const box = $("points");
    box.textContent = "";
    if (!doc.data) return;
    const { points, xs, ys } = doc.data, n = xs.length, size = 240, cell = size / n;
    const sx = (u) => ((u - xs[0]) / (xs[n - 1] - xs[0])) * (size - cell) + cell / 2;
    const sy = (v) => ((ys[0] - v) / (ys[0] - ys[n - 1])) * (size - cell) + cell / 2;
    const svg = el("svg:svg", { viewBox: `0 0 ${size} ${size}`, width: size, role: "img",
      "aria-label": `The ${points.length} points and the class the network gives each place` });
    const boundary = doc.steps.length ? doc.steps[step || 0].boundary : null;
    if (boundary) {
      boundary.forEach((c, k) => svg.appendChild(el("svg:rect", { x: (k % n) * cell, y: Math.floor(k / n) * cell,
        width: cell + 0.5, height: cell + 0.5, fill: COLOURS[c % 4], "fill-opacity": 0.18, "data-class": c })));
    }
    for (const [u, v, c] of points) {
      const x = sx(u), y = sy(v), colour = COLOURS[c % 4], mark = MARKS[c % 4];
      const shape = mark === "circle" ? el("svg:circle", { cx: x, cy: y, r: 3 })
        : mark === "square" ? el("svg:rect", { x: x - 3, y: y - 3, width: 6, height: 6 })
        : el("svg:polygon", { points: mark === "triangle" ? `${x},${y - 4} ${x - 4},${y + 3} ${x + 4},${y + 3}` : `${x},${y - 4} ${x + 4},${y} ${x},${y + 4} ${x - 4},${y}` });
      shape.setAttribute("fill", colour);
      shape.setAttribute("class", "point");
      svg.appendChild(shape);
    }
    box.appendChild(svg);
  }

  // -- training ----------------------------------------------------------------------
  function drawTraining() {
    const steps = doc.steps;
    const slider = $("training-step");
    if (!steps.length) {
      slider.disabled = true;
      $("play").disabled = true;
      $("training-out").textContent = "no training steps in this page";
      return;
    }
    slider.max = steps.length - 1;
    const w = 320, h = 120;
    const losses = steps.map((s) => s.loss);
    const top = Math.max(...losses), bottom = Math.min(...losses);
    const point = (k) => `${10 + (w - 20) * k / Math.max(1, steps.length - 1)},${10 + (h - 20) * (top === bottom ? 0.5 : (top - losses[k]) / (top - bottom))}`;
    const svg = el("svg:svg", { viewBox: `0 0 ${w} ${h}`, width: w, role: "img", "aria-label": "Loss per training step" });
    svg.appendChild(el("svg:polyline", { points: losses.map((_, k) => point(k)).join(" "), fill: "none", stroke: "#333" }));
    const [cx, cy] = point(step || 0).split(",");
    svg.appendChild(el("svg:circle", { cx: cx, cy: cy, r: 4, fill: "#c00070" }));
    $("curve").textContent = "";
    $("curve").appendChild(svg);
    const s = steps[step || 0];
    $("training-out").textContent = `step ${(step || 0) + 1} of ${steps.length}: loss ${fmt(s.loss)}`;
    $("rule").textContent = doc.optimizer === "sgd" ? "Each step: W := W - lr dW (the Update stages)."
      : `Each step: ${doc.optimizer === "misclassified" ? "gradient descent on the points the network gets wrong (the perceptron's rule)" : doc.optimizer}, at lr ${doc.lr}; the Update stages show plain gradient descent's step.`;
    $("norms").textContent = "";
    const norms = el("p", { class: "formula" }, s.grad_norms.map((n, l) => `|dW[${l + 1}]| = ${fmt(n)}`).join(", "));
    $("norms").appendChild(norms);
  }
  function showStep(k) {
    step = k;
    $("training-step").value = String(k);
    drawTraining();
    drawData();
    drawNetwork();
    showStage();
    if (chosen) showChain(chosen);
  }
  let playing = null;
  function play() {
    if (playing) { clearInterval(playing); playing = null; $("play").textContent = "Play"; return; }
    $("play").textContent = "Pause";
    playing = setInterval(() => {
      const next = (step === null ? 0 : step) + 1;
      if (next >= doc.steps.length) { clearInterval(playing); playing = null; $("play").textContent = "Play"; return; }
      showStep(next);
    }, 250);
  }

  $("note").textContent = doc.note || "";
  if (!small) document.querySelector(".hint").textContent = "Layers drawn as blocks: the network is too large to draw each weight.";
  if (!Object.keys(doc.chains).length) $("chain").textContent = "The chains of single weights are shown for networks of up to 200 parameters.";
  $("summary").textContent = `Layers ${doc.sizes.join("-")}, activations ${doc.activations.join(", ")}, loss ${doc.loss}, learning rate ${doc.lr}; loss ${fmt(doc.loss_value)}.`;
  $("previous").addEventListener("click", () => move(-1));
  $("next").addEventListener("click", () => move(1));
  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement) return;
    if (event.key === "ArrowLeft") move(-1);
    if (event.key === "ArrowRight") move(1);
  });
  $("training-step").addEventListener("input", (event) => showStep(+event.target.value));
  $("play").addEventListener("click", play);
  drawNetwork();
  drawTraining();
  drawData();
  showStage();
})();
