// xlabel scatter view: one plotly.js figure (scattergl, one trace per panel), driven by
// binary custom messages. Python owns all state; this file only draws and reports.
// Protocol (Python -> JS): "plotly" (the library, once per page), "data" (all arrays),
// "update" (codes/sources, full or delta), "xy" (new axes data), "select" (indices).
// (JS -> Python): "need_plotly", "ready", "selected" (+ Int32 indices), "button", "rendered".

const LOADER = "__xlabelPlotlyLoader";

function loadPlotly(model) {
  if (window.Plotly && window.Plotly.newPlot) return Promise.resolve(window.Plotly);
  if (!window[LOADER]) {
    window[LOADER] = new Promise((resolve, reject) => {
      const onMsg = (msg, buffers) => {
        if (!msg || msg.type !== "plotly") return;
        model.off("msg:custom", onMsg);
        try {
          const source = new TextDecoder().decode(buffers[0]);
          // plotly.min.js is UMD: give it a CommonJS "module" so that it returns the
          // library instead of touching globals or an AMD loader (works offline, no CDN).
          const module = { exports: {} };
          new Function("module", "exports", "define", source)(module, module.exports, undefined);
          window.Plotly = module.exports;
          resolve(window.Plotly);
        } catch (err) {
          window[LOADER] = null;
          reject(err);
        }
      };
      model.on("msg:custom", onMsg);
      model.send({ type: "need_plotly" });
    });
  }
  return window[LOADER];
}

function typed(Kind, view) {
  // Copy: a DataView's offset may not be aligned for Kind.
  const bytes = view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength);
  return new Kind(bytes);
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function discreteScale(colors) {
  // codes -1..k-1 -> colors[0..k]; one flat band per code.
  const n = colors.length;
  const scale = [];
  colors.forEach((color, i) => {
    scale.push([i / n, color]);
    scale.push([(i + 1) / n, color]);
  });
  return scale;
}

function fmt(value) {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e6 || abs < 1e-3)) return value.toExponential(3);
  return Number.isInteger(value) ? String(value) : value.toPrecision(5);
}

class ScatterView {
  constructor(model, root) {
    this.model = model;
    this.root = root;
    this.data = null;
    this.times = { recolors: 0, selections: 0 };
    this.busy = false;
    this.build();
  }

  build() {
    const root = this.root;
    root.classList.add("xlabel-scatter");
    root.setAttribute("tabindex", "0");
    // Keep JupyterLab's own shortcuts (e.g. "1", "z" in command mode) away from our keys.
    root.setAttribute("data-lm-suppress-shortcuts", "true");
    this.toolbar = el("div", "xlabel-toolbar");
    this.controls = el("div", "xlabel-controls");
    this.buttons = el("div", "xlabel-buttons");
    this.toolbar.append(this.buttons, this.controls);
    this.plotDiv = el("div", "xlabel-plot");
    this.legend = el("div", "xlabel-legend");
    this.status = el("div", "xlabel-status");
    this.tooltip = el("div", "xlabel-tooltip");
    this.tooltip.style.display = "none";
    root.append(this.toolbar, this.plotDiv, this.legend, this.status, this.tooltip);
    this.renderButtons();
    this.renderControls();
    this.renderLegend();
    this.renderStatus();
    root.addEventListener("keydown", (ev) => this.onKey(ev));
  }

  send(content, buffers) {
    this.model.send(content, undefined, buffers || []);
  }

  renderButtons() {
    this.buttons.replaceChildren();
    for (const spec of this.model.get("buttons")) {
      const button = el("button", "xlabel-button", spec.label);
      button.dataset.id = spec.id;
      if (spec.key) button.title = `key: ${spec.key}`;
      if (spec.color) button.style.borderLeft = `6px solid ${spec.color}`;
      button.addEventListener("click", () => this.send({ type: "button", id: spec.id }));
      this.buttons.append(button);
    }
  }

  select(label, options, value, onChange) {
    const wrap = el("label", "xlabel-control", label + " ");
    const box = el("select");
    for (const name of options) {
      const option = el("option", null, name);
      option.value = name;
      box.append(option);
    }
    box.value = value;
    box.addEventListener("change", () => onChange(box.value));
    wrap.append(box);
    return wrap;
  }

  renderControls() {
    const m = this.model;
    this.controls.replaceChildren();
    const columns = m.get("columns");
    if (columns.length) {
      this.controls.append(
        this.select("x", columns, m.get("x_name"), (v) => { m.set("x_name", v); m.save_changes(); }),
        this.select("y", columns, m.get("y_name"), (v) => { m.set("y_name", v); m.save_changes(); }));
    }
    const colorOptions = m.get("color_options");
    if (colorOptions.length > 1) {
      this.controls.append(this.select("color", colorOptions, m.get("color_by"),
        (v) => { m.set("color_by", v); m.save_changes(); }));
    }
    const wrap = el("label", "xlabel-control");
    const box = el("input");
    box.type = "checkbox";
    box.className = "xlabel-logy";
    box.checked = m.get("log_y");
    box.addEventListener("change", () => { m.set("log_y", box.checked); m.save_changes(); });
    wrap.append(box, document.createTextNode(" log y"));
    this.controls.append(wrap);
  }

  renderLegend() {
    this.legend.replaceChildren();
    const titles = this.model.get("panels");
    this.model.get("legends").forEach((entries, k) => {
      const group = el("div", "xlabel-legend-group");
      if (titles.length > 1) group.append(el("span", "xlabel-legend-title", titles[k] + ":"));
      for (const entry of entries) {
        const item = el("span", "xlabel-legend-item");
        const swatch = el("span", "xlabel-swatch");
        swatch.style.background = entry.color;
        item.append(swatch, document.createTextNode(`${entry.name} (${entry.count})`));
        group.append(item);
      }
      this.legend.append(group);
    });
  }

  renderStatus() {
    this.status.textContent = this.model.get("status");
  }

  onKey(ev) {
    const ctrl = ev.ctrlKey || ev.metaKey;
    let id = null;
    if (ctrl && ev.key.toLowerCase() === "z") id = ev.shiftKey ? "redo" : "undo";
    else if (ctrl && ev.key.toLowerCase() === "y") id = "redo";
    else if (ev.key === "Escape") id = "clear";
    else if (!ctrl && !ev.altKey) {
      const spec = this.model.get("buttons").find((b) => b.key && b.key === ev.key);
      if (spec) id = spec.id;
    }
    if (id === null) return;
    ev.preventDefault();
    ev.stopPropagation();
    this.send({ type: "button", id });
  }

  // ------------------------------------------------------------------ data

  onMessage(msg, buffers) {
    if (!msg || !msg.type) return;
    if (msg.type === "data") this.setData(msg, buffers);
    else if (!this.data) return;
    else if (msg.type === "update") this.update(msg, buffers);
    else if (msg.type === "xy") this.setXY(msg, buffers);
    else if (msg.type === "select") this.applySelection(typed(Int32Array, buffers[0]));
  }

  setData(msg, buffers) {
    const t0 = performance.now();
    const n = msg.n;
    const panels = msg.panels;
    let b = 0;
    const data = {
      n,
      x: typed(Float32Array, buffers[b++]),
      y: typed(Float32Array, buffers[b++]),
      frame: typed(Int32Array, buffers[b++]),
      scan: typed(Int16Array, buffers[b++]),
      sources: typed(Int8Array, buffers[b++]),
      codes: [],
    };
    for (let k = 0; k < panels; k++) data.codes.push(typed(Int16Array, buffers[b++]));
    this.data = data;
    this.meta = msg;
    this.draw().then(() => {
      this.times.firstRender = performance.now() - t0;
      this.send({ type: "rendered", ms: this.times.firstRender, n });
    });
  }

  displayed(values, axisLog) {
    // Non-finite values (and <= 0 on a log axis) are drawn at the lower edge, as "x".
    let lo = Infinity, hi = -Infinity;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (Number.isFinite(v) && (!axisLog || v > 0)) { if (v < lo) lo = v; if (v > hi) hi = v; }
    }
    if (lo === Infinity) { lo = axisLog ? 1 : 0; hi = lo; }
    let edge;
    if (axisLog) edge = lo / Math.pow(hi / lo || 10, 0.05) / 1.5;
    else edge = lo - 0.05 * ((hi - lo) || 1);
    const out = new Float32Array(values.length);
    const flagged = new Uint8Array(values.length);
    let count = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (Number.isFinite(v) && (!axisLog || v > 0)) out[i] = v;
      else { out[i] = edge; flagged[i] = 1; count++; }
    }
    return { out, flagged, count };
  }

  colorArray(k) {
    const codes = this.data.codes[k];
    const out = new Float32Array(codes.length);
    for (let i = 0; i < codes.length; i++) out[i] = codes[i];
    return out;
  }

  traces() {
    const m = this.model;
    const d = this.data;
    const logY = m.get("log_y");
    const xs = this.displayed(d.x, false);
    const ys = this.displayed(d.y, logY);
    const flagged = new Uint8Array(d.n);
    for (let i = 0; i < d.n; i++) flagged[i] = xs.flagged[i] | ys.flagged[i];
    this.flagged = flagged;
    const anyFlagged = xs.count + ys.count > 0;
    let symbols = "circle";
    if (anyFlagged) {
      symbols = new Array(d.n);
      for (let i = 0; i < d.n; i++) symbols[i] = flagged[i] ? "x" : "circle";
    }
    const palettes = m.get("palettes");
    const size = d.n > 100000 ? 3 : d.n > 10000 ? 4 : 6;
    return palettes.map((palette, k) => ({
      type: "scattergl",
      mode: "markers",
      x: xs.out,
      y: ys.out,
      xaxis: k ? `x${k + 1}` : "x",
      yaxis: k ? `y${k + 1}` : "y",
      hoverinfo: "none",
      showlegend: false,
      marker: {
        color: this.colorArray(k),
        colorscale: discreteScale(palette),
        cmin: -1.5,
        cmax: palette.length - 1.5,
        size,
        symbol: symbols,
      },
      unselected: { marker: { opacity: 0.15 } },
      selectedpoints: this.selection && this.selection.length ? Array.from(this.selection) : null,
    }));
  }

  layout() {
    const m = this.model;
    const panels = m.get("panels");
    const n = panels.length;
    const gap = n > 1 ? 0.04 : 0;
    const layout = {
      height: m.get("height"),
      // panel titles sit below the modebar (about 26 px high), not under it
      margin: { l: 60, r: 10, t: n > 1 ? 56 : 10, b: 45 },
      dragmode: m.get("dragmode"),
      hovermode: "closest",
      uirevision: "xlabel",
      annotations: [],
    };
    panels.forEach((title, k) => {
      const suffix = k ? String(k + 1) : "";
      layout["xaxis" + suffix] = {
        domain: [k / n + (k ? gap : 0), (k + 1) / n - (k < n - 1 ? gap : 0)],
        title: { text: m.get("x_name") },
        anchor: "y" + suffix,
        matches: k ? "x" : undefined,
      };
      layout["yaxis" + suffix] = {
        title: { text: k ? "" : m.get("y_name") },
        type: m.get("log_y") ? "log" : "linear",
        anchor: "x" + suffix,
        matches: k ? "y" : undefined,
      };
      if (n > 1) {
        layout.annotations.push({
          text: title, showarrow: false, xref: "paper", yref: "paper",
          x: (k + 0.5) / n, y: 1.02, xanchor: "center", yanchor: "bottom",
        });
      }
    });
    return layout;
  }

  async draw() {
    const Plotly = window.Plotly;
    const config = { responsive: true, displaylogo: false, scrollZoom: false };
    if (!this.plotted) {
      await Plotly.newPlot(this.plotDiv, this.traces(), this.layout(), config);
      this.plotted = true;
      this.attachPlotEvents();
    } else {
      await Plotly.react(this.plotDiv, this.traces(), this.layout(), config);
    }
    this.plotDiv.__xlabel = this.times;
  }

  attachPlotEvents() {
    const gd = this.plotDiv;
    gd.on("plotly_selected", (ev) => this.onSelected(ev));
    gd.on("plotly_deselect", () => this.onSelected(null));
    gd.on("plotly_hover", (ev) => this.onHover(ev));
    gd.on("plotly_unhover", () => { this.tooltip.style.display = "none"; });
  }

  onSelected(ev) {
    if (this.busy) return;
    const points = ev && ev.points ? ev.points : [];
    const indices = new Int32Array(points.length);
    let panel = 0;
    for (let i = 0; i < points.length; i++) {
      indices[i] = points[i].pointIndex;
      panel = points[i].curveNumber;
    }
    this.selection = indices;
    this.times.selections += 1;
    this.times.selectedAt = performance.now();
    this.linkPanels(panel, indices);
    this.send({ type: "selected", panel, n: indices.length }, [indices.buffer]);
  }

  linkPanels(panel, indices) {
    // Show the selection in the other panels at once, without touching the one that
    // holds the lasso outline.
    const others = this.model.get("panels").map((_, k) => k).filter((k) => k !== panel);
    if (!others.length) return;
    const points = indices.length ? Array.from(indices) : null;
    this.busy = true;
    window.Plotly.restyle(this.plotDiv, { selectedpoints: others.map(() => points) }, others)
      .finally(() => { this.busy = false; });
  }

  async applySelection(indices) {
    const Plotly = window.Plotly;
    const gd = this.plotDiv;
    this.selection = indices;
    this.busy = true;
    try {
      // The browser keeps the lasso outline in layout.selections and would re-apply it
      // over selectedpoints: drop it first.
      if (gd.layout.selections && gd.layout.selections.length) {
        await Plotly.relayout(gd, { selections: [] });
      }
      const points = indices.length ? Array.from(indices) : null;
      const all = this.model.get("panels").map((_, k) => k);
      await Plotly.restyle(gd, { selectedpoints: all.map(() => points) }, all);
    } finally {
      this.busy = false;
    }
  }

  async update(msg, buffers) {
    const d = this.data;
    let b = 0;
    const indices = msg.full ? null : typed(Int32Array, buffers[b++]);
    const codes = typed(Int16Array, buffers[b++]);
    const sources = msg.sources ? typed(Int8Array, buffers[b++]) : null;
    const panel = msg.panel;
    if (indices === null) {
      d.codes[panel] = codes;
      if (sources) d.sources = sources;
    } else {
      for (let i = 0; i < indices.length; i++) {
        d.codes[panel][indices[i]] = codes[i];
        if (sources) d.sources[indices[i]] = sources[i];
      }
    }
    if (msg.palette) {
      await this.draw();
    } else {
      await window.Plotly.restyle(this.plotDiv, { "marker.color": [this.colorArray(panel)] }, [panel]);
    }
    this.times.recolors += 1;
    this.times.recoloredAt = performance.now();
  }

  setXY(msg, buffers) {
    this.data.x = typed(Float32Array, buffers[0]);
    this.data.y = typed(Float32Array, buffers[1]);
    this.draw();
  }

  onHover(ev) {
    const point = ev && ev.points && ev.points[0];
    if (!point || !this.data) return;
    const i = point.pointIndex;
    const d = this.data;
    const m = this.model;
    const meta = this.meta;
    const lines = [`frame ${d.frame[i]}` + (meta.scans.length > 1 || meta.scans[0] ? ` · scan ${meta.scans[d.scan[i]]}` : "")];
    lines.push(`${m.get("x_name")}: ${fmt(d.x[i])}`, `${m.get("y_name")}: ${fmt(d.y[i])}`);
    if (this.flagged && this.flagged[i]) lines.push("⚠ not finite / not plottable: drawn at the edge");
    const names = m.get("code_names");
    m.get("panels").forEach((title, k) => {
      const code = d.codes[k][i];
      const name = code >= 0 ? (names[k][code] ?? String(code)) : (m.get("none_names")[k]);
      lines.push(`${title}: ${name}`);
    });
    if (meta.with_sources) {
      lines.push(`source: ${meta.source_names[d.sources[i]] || "—"}`);
    }
    this.tooltip.textContent = lines.join("\n");
    const box = this.root.getBoundingClientRect();
    const e = ev.event || {};
    this.tooltip.style.left = `${(e.clientX || 0) - box.left + 12}px`;
    this.tooltip.style.top = `${(e.clientY || 0) - box.top + 12}px`;
    this.tooltip.style.display = "block";
  }
}

async function render({ model, el: root }) {
  const view = new ScatterView(model, root);
  const onMsg = (msg, buffers) => view.onMessage(msg, buffers);
  model.on("msg:custom", onMsg);
  const redraw = () => { if (view.data) view.draw(); };
  model.on("change:status", () => view.renderStatus());
  model.on("change:legends", () => view.renderLegend());
  model.on("change:buttons", () => view.renderButtons());
  model.on("change:log_y", redraw);
  model.on("change:panels", redraw);
  model.on("change:palettes", redraw);
  model.on("change:x_name change:y_name change:columns change:color_options change:color_by",
    () => view.renderControls());
  try {
    await loadPlotly(model);
  } catch (err) {
    view.status.textContent = `xlabel: cannot load plotly.js: ${err}`;
    return;
  }
  model.send({ type: "ready" });
  return () => {
    model.off("msg:custom", onMsg);
    if (view.plotted) window.Plotly.purge(view.plotDiv);
  };
}

export default { render };
