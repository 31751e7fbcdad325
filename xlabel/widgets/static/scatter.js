// xlabel scatter view: one plotly.js figure (one trace per panel), driven by binary
// custom messages. Python owns all state; this file only draws and reports.
// Two modes. Markers (small scatters): scattergl traces of all points.
// Raster (big scatters, msg.raster): the kernel draws the points as one PNG per panel,
// shown as a layout image under the axes; plotly only draws axes, zoom/pan, lasso.
// Protocol (Python -> JS): "plotly" (+ bundle: the library, once per page), "data" (all arrays, or
// the extent in raster mode), "update" (codes/sources, full or delta), "xy" (new axes
// data / extent), "select" (indices; raster: none), "image" (PNGs + their view),
// "hover" (tooltip lines of the nearest frame), "thumb" (+ PNG of one frame).
// (JS -> Python): "need_plotly" (+ bundle), "ready", "selected" (+ Int32 indices), "polygon"
// (+ Float64 xs, ys in axis units), "view" (axis ranges + plot size), "hover", "thumb"
// (frame index, once the mouse rests on a frame), "button", "rendered".

const LIBS = "__xlabelPlotly";
// The tooltip asks for the frame's thumbnail after the mouse rests this long on it.
const THUMB_DELAY_MS = 200;
// Plot margins (px); the kernel's first image is made for the plot area they leave.
// r: room for half of a tick label at the right end of the x axis (tick labels are not
// measured: see TICK_LABELS).
const MARGIN = { l: 60, r: 30, b: 45, t: 10, tPanels: 56 };
// plotly's default "hide past div" measures every new tick label with a forced layout:
// in a JupyterLab page that was 2/3 of a zoom's relayout (21 of 32 ms). The margins leave
// the labels room instead.
const TICK_LABELS = { ticklabeloverflow: "allow" };
// Space between the panels of a multi-panel plot (share of the width).
const PANEL_GAP = 0.04;
// A press held while plotly finishes the previous drag is replayed at the latest this
// long after that drag's release (plotly needs up to SELECTDELAY = 100 ms).
const SETTLE_MAX_MS = 300;
const MOUSE_FIELDS = ["clientX", "clientY", "screenX", "screenY", "button", "buttons",
                      "ctrlKey", "shiftKey", "altKey", "metaKey", "detail"];

// Which plotly.js a plot needs: raster plots draw only axes, a layout image and the
// lasso outline (plotly's "basic" bundle: 1.2 MB, evaluated in ~0.15 s); marker plots
// need scattergl (the full bundle: 4.8 MB, ~1 s to evaluate).
function bundleOf(model) {
  return model.get("raster_mode") ? "basic" : "full";
}

function loadPlotly(model, bundle) {
  // The library, evaluated once per page and bundle; the full bundle serves raster plots
  // too. A plotly.js the page already has (not ours) serves every plot.
  const libs = window[LIBS] || (window[LIBS] = {});
  if (!libs.full && !libs.basic && window.Plotly && window.Plotly.newPlot) {
    libs.full = Promise.resolve(window.Plotly);
  }
  if (libs.full) return libs.full;
  if (!libs[bundle]) {
    libs[bundle] = requestPlotly(model, bundle)
      .then((source) => evaluatePlotly(source, bundle))
      .catch((err) => {
        delete libs[bundle];
        throw err;
      });
  }
  return libs[bundle];
}

// plotly.js's UMD wrapper passes its factory as an arrow function argument: V8 preparses
// it with the wrapper and parses it again, in full, when it is called. Wrapped in
// parentheses it is compiled at once, parsed once (V8's eager "PIFE" heuristic): the
// bundles evaluate ~1.45x faster (bench/bench_plotly_eval.py).
const UMD_FACTORY = '(typeof self !== "undefined" ? self : this, () => {';
const UMD_END = "}));";

function eagerFactory(source) {
  const at = source.indexOf(UMD_FACTORY);
  const end = source.lastIndexOf(UMD_END);
  if (at < 0 || end < at) return source;                   // another wrapper: as it is
  const open = at + UMD_FACTORY.length - "() => {".length;
  // "(" before the factory; "})" + "));" after it.
  return `${source.slice(0, open)}(${source.slice(open, end)}})${UMD_END.slice(1)}` +
         source.slice(end + UMD_END.length);
}

function evaluatePlotly(source, bundle) {
  // plotly.js is UMD: give it a CommonJS "module" so that it returns the
  // library instead of touching globals or an AMD loader (works offline, no CDN).
  const module = { exports: {} };
  new Function("module", "exports", "define", eagerFactory(source))(module, module.exports,
                                                                     undefined);
  if (!window.Plotly || bundle === "full") window.Plotly = module.exports;
  return module.exports;
}

function requestPlotly(model, bundle) {
  return new Promise((resolve, reject) => {
    const onMsg = (msg, buffers) => {
      if (!msg || msg.type !== "plotly" || (msg.bundle || "full") !== bundle) return;
      model.off("msg:custom", onMsg);
      try {
        resolve(new TextDecoder().decode(buffers[0]));
      } catch (err) {
        reject(err);
      }
    };
    model.on("msg:custom", onMsg);
    model.send({ type: "need_plotly", bundle });
  });
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

function base64(view) {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  if (typeof bytes.toBase64 === "function") return bytes.toBase64();   // native, 10x faster
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function sameView(a, b) {
  if (!a || !b || a.width !== b.width || a.height !== b.height) return false;
  const close = (p, q, span) => Math.abs(p - q) <= 1e-9 * Math.abs(span);
  return close(a.x0, b.x0, b.x1 - b.x0) && close(a.x1, b.x1, b.x1 - b.x0) &&
         close(a.y0, b.y0, b.y1 - b.y0) && close(a.y1, b.y1, b.y1 - b.y0);
}

function sameExtent(a, b) {
  // Extents come from the kernel as JSON (the same numbers, exactly).
  return Boolean(a && b && a.x && b.x) && a.x[0] === b.x[0] && a.x[1] === b.x[1] &&
         a.y[0] === b.y[0] && a.y[1] === b.y[1];
}

function panelOfAxis(id) {
  // "x" -> 0, "x2" -> 1, "y3" -> 2
  const k = parseInt(id.slice(1), 10);
  return Number.isFinite(k) ? k - 1 : 0;
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
    this.times = { recolors: 0, selections: 0, images: 0 };
    this.busy = false;
    this.raster = false;
    this.viewPending = false;
    this.viewDirty = false;
    this.hoverSeq = 0;
    this.hoverPending = false;
    this.mouse = null;
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
    this.buildTags();
    root.addEventListener("keydown", (ev) => this.onKey(ev));
    // A press in the plot gives the widget keyboard focus (plotly's drag layer would
    // not), so 1/2/Ctrl+Z work right after a lasso; it also ends any tooltip.
    // No tooltip from the press until the mouse moves on after the release: plotly
    // would otherwise leave one standing over the legend after every lasso.
    this.plotDiv.addEventListener("mousedown", (ev) => {
      this.hideTooltip();
      if (this.holdPress(ev)) return;
      this.dragging = true;
      this.downAt = [ev.clientX, ev.clientY];
      this.polygonSent = false;
      root.focus({ preventScroll: true });
    }, true);
    this.onMouseUp = (ev) => {
      if (this.holdEvent(ev)) return;
      if (!this.dragging) return;
      this.dragging = false;
      this.startSettling();
      if (this.raster && !ev.shiftKey && !ev.altKey) this.sendOutline();
      if (this.deferredImages) {
        const [msg, images] = this.deferredImages;
        this.deferredImages = null;
        this.applyImages(msg, images);
      }
      this.quietAt = [ev.clientX, ev.clientY];
      this.hideTooltip();
    };
    window.addEventListener("mouseup", this.onMouseUp, true);
    this.plotDiv.addEventListener("mousemove", (ev) => {
      if (this.quietAt && (ev.clientX !== this.quietAt[0] || ev.clientY !== this.quietAt[1])) {
        this.quietAt = null;
      }
    }, true);
    this.plotDiv.addEventListener("mousemove", (ev) => this.onMouseMove(ev));
    this.plotDiv.addEventListener("mouseleave", () => { this.mouse = null; this.hideTooltip(); });
  }

  hideTooltip() {
    this.tooltip.style.display = "none";
    this.tipIndex = -1;
    clearTimeout(this.thumbTimer);
  }

  // Thumbnail on demand (both modes): asked for once the tooltip rests on one frame.
  scheduleThumb(index) {
    if (!this.model.get("thumbnails") || index < 0 || this.tooltip.style.display !== "block") return;
    this.tipIndex = index;
    clearTimeout(this.thumbTimer);
    if (this.thumb && this.thumb.index === index) { this.attachThumb(); return; }
    this.thumbTimer = setTimeout(() => {
      if (this.tipIndex === index) this.send({ type: "thumb", index });
    }, THUMB_DELAY_MS);
  }

  showThumb(msg, buffers) {
    const src = buffers && buffers.length ? "data:image/png;base64," + base64(buffers[0]) : null;
    this.thumb = { index: msg.index, src, error: msg.error };
    this.times.thumbs = (this.times.thumbs || 0) + 1;
    if (this.tipIndex === msg.index && this.tooltip.style.display === "block") this.attachThumb();
  }

  attachThumb() {
    if (this.tooltip.querySelector(".xlabel-thumb")) return;
    const img = el("img", "xlabel-thumb");
    if (this.thumb.src) img.src = this.thumb.src;
    else img.alt = this.thumb.error || "no thumbnail";
    this.tooltip.append(el("br"), img);
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

  // ------------------------------------------------------------------ tags

  buildTags() {
    // A tag field (type a new name or pick one of the store's tags) and two buttons
    // that tag the current selection: sent as the buttons "add_tag:<name>" and
    // "remove_tag:<name>"; the kernel does the step and answers with a recolour.
    this.tagBox = el("div", "xlabel-tags");
    const listId = `xlabel-tag-list-${Math.random().toString(36).slice(2)}`;
    this.tagList = el("datalist");
    this.tagList.id = listId;
    this.tagInput = el("input", "xlabel-tag-name");
    this.tagInput.type = "text";
    this.tagInput.placeholder = "tag";
    this.tagInput.setAttribute("list", listId);
    this.tagInput.setAttribute("aria-label", "tag name");
    // Typing a name must not reach the plot's keys (1..9 assign classes).
    this.tagInput.addEventListener("keydown", (ev) => {
      ev.stopPropagation();
      if (ev.key === "Enter") this.sendTag("add_tag");
    });
    this.tagBox.append(this.tagInput, this.tagList);
    for (const [id, label] of [["add_tag", "add tag"], ["remove_tag", "remove tag"]]) {
      const button = el("button", "xlabel-button xlabel-tag-button", label);
      button.dataset.id = id;
      button.title = `${label} to/from the selected frames`;
      button.addEventListener("click", () => this.sendTag(id));
      this.tagBox.append(button);
    }
    this.buttons.after(this.tagBox);
    this.renderTags();
  }

  sendTag(action) {
    this.send({ type: "button", id: `${action}:${this.tagInput.value.trim()}` });
  }

  renderTags() {
    const names = this.model.get("tag_names");
    this.tagBox.style.display = this.model.get("tag_tools") ? "" : "none";
    this.tagList.replaceChildren(...names.map((name) => {
      const option = el("option");
      option.value = name;
      return option;
    }));
    if (!this.tagInput.value && names.length) this.tagInput.value = names[0];
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
    else if (msg.type === "image") this.setImages(msg, buffers);   // the first may come first
    else if (!this.data) return;
    else if (msg.type === "update") this.update(msg, buffers);
    else if (msg.type === "xy") this.setXY(msg, buffers);
    else if (msg.type === "select") {
      this.applySelection(msg.raster ? new Int32Array(0) : typed(Int32Array, buffers[0]));
    }
    else if (msg.type === "hover") this.showHover(msg);
    else if (msg.type === "thumb") this.showThumb(msg, buffers);
  }

  setData(msg, buffers) {
    this.times.dataEpoch = Date.now();
    if (msg.received !== undefined && this.times.readyEpoch !== undefined) {
      this.times.readyTrip = { toKernel: msg.received - this.times.readyEpoch,
                               kernel: msg.sent - msg.received, back: Date.now() - msg.sent };
    }
    if (msg.raster) {
      if (this.raster && this.data && sameExtent(this.data.extent, msg.extent)) {
        this.data.n = msg.n;                     // started from the state: drawn already
        this.meta = msg;
        return;
      }
      this.startRaster({ n: msg.n, extent: msg.extent }, msg);
      return;
    }
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
      this.times.firstRenderEpoch = Date.now();
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

  extentTrace(k, xs, ys) {
    // An invisible line between the corners of what must be shown (the frames' extent
    // padded by 6%): plotly's autorange (also on double-click) then shows exactly that
    // (a line adds no padding of its own: the kernel can render the first image before
    // plotly draws), and keeps the lowest points clear of the x axis' drag handle.
    return {
      type: "scatter", mode: "lines", x: xs, y: ys, hoverinfo: "skip", showlegend: false,
      xaxis: k ? `x${k + 1}` : "x", yaxis: k ? `y${k + 1}` : "y",
      line: { width: 0 }, opacity: 0,
    };
  }

  padded(lo, hi, log) {
    // 6% beyond the data on each side (in axis units).
    if (log) {
      const a = Math.log10(lo), b = Math.log10(hi), pad = 0.06 * ((b - a) || 1);
      return [Math.pow(10, a - pad), Math.pow(10, b + pad)];
    }
    const pad = 0.06 * ((hi - lo) || 1);
    return [lo - pad, hi + pad];
  }

  rasterTraces() {
    const e = this.data.extent;
    const logY = this.model.get("log_y");
    const xs = this.padded(e.x[0], e.x[1], false), ys = this.padded(e.y[0], e.y[1], logY);
    return this.model.get("panels").map((_, k) => this.extentTrace(k, xs, ys));
  }

  traces() {
    if (this.raster) return this.rasterTraces();
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
    this.nPanels = palettes.length;
    const low = (v) => { let lo = Infinity, hi = -Infinity;
      for (let i = 0; i < v.length; i++) { if (v[i] < lo) lo = v[i]; if (v[i] > hi) hi = v[i]; }
      return [lo, hi]; };
    const [xlo, xhi] = low(xs.out), [ylo, yhi] = low(ys.out);
    const extent = palettes.map((_, k) => this.extentTrace(
      k, this.padded(xlo, xhi, false), this.padded(ylo, yhi, logY)));
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
    })).concat(extent);
  }

  axesKey() {
    // A new x/y column or log y resets zoom, pan and lasso outlines (plotly keeps user
    // ranges and outlines while uirevision stays the same).
    const m = this.model;
    return `${m.get("x_name")}|${m.get("y_name")}|${m.get("log_y")}|${this.xyVersion || 0}`;
  }

  layout() {
    const m = this.model;
    const panels = m.get("panels");
    const n = panels.length;
    const gap = n > 1 ? PANEL_GAP : 0;
    const layout = {
      height: m.get("height"),
      // panel titles sit below the modebar (about 26 px high), not under it
      margin: { l: MARGIN.l, r: MARGIN.r, t: n > 1 ? MARGIN.tPanels : MARGIN.t, b: MARGIN.b },
      dragmode: m.get("dragmode"),
      hovermode: this.raster ? false : "closest",
      uirevision: this.axesKey(),
      annotations: [],
      images: this.raster && this.images ? this.images : [],
    };
    // With a new uirevision plotly drops the user's zoom (autorange below applies).
    if (this.plotted && this.lastAxesKey !== layout.uirevision) layout.selections = [];
    this.lastAxesKey = layout.uirevision;
    panels.forEach((title, k) => {
      const suffix = k ? String(k + 1) : "";
      layout["xaxis" + suffix] = {
        ...TICK_LABELS,
        domain: [k / n + (k ? gap : 0), (k + 1) / n - (k < n - 1 ? gap : 0)],
        title: { text: m.get("x_name") },
        anchor: "y" + suffix,
        matches: k ? "x" : undefined,
      };
      layout["xaxis" + suffix].autorange = true;
      layout["yaxis" + suffix] = {
        ...TICK_LABELS,
        title: { text: k ? "" : m.get("y_name") },
        type: m.get("log_y") ? "log" : "linear",
        // Full numbers on every log tick ("20, 30", not "2, 3" after "10").
        tickformat: m.get("log_y") ? "~g" : undefined,
        anchor: "x" + suffix,
        matches: k ? "y" : undefined,
        autorange: true,
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

  draw() {
    // One draw at a time, in order, each once plotly.js is there (it loads while the
    // kernel sends the data and renders the first image).
    const next = (this.drawQueue || Promise.resolve()).then(() => this.drawNow());
    this.drawQueue = next.catch((err) => { this.status.textContent = `xlabel: ${err.message || err}`; });
    return this.drawQueue;
  }

  async drawNow() {
    let Plotly;
    try {
      Plotly = this.Plotly = await loadPlotly(this.model, bundleOf(this.model));
    } catch (err) {
      throw new Error(`cannot load plotly.js: ${err}`);
    }
    if (this.times.plotlyEpoch === undefined) this.times.plotlyEpoch = Date.now();
    // No "Share chart" (it uploads the data to a cloud service); a new drag inside an
    // old lasso outline starts a new lasso instead of moving the outline.
    const config = { responsive: true, displaylogo: false, scrollZoom: false,
                     showSendToCloud: false, showEditInChartStudio: false,
                     editSelection: false, modeBarButtonsToRemove: ["sendChartToCloud"] };
    if (!this.plotted && this.raster && !this.images && this.viewPending) {
      // The first image may be waiting in the page's queue (it was asked for before
      // plotly.js was evaluated): let it in, so that newPlot draws it with the axes.
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    const traces = this.traces();
    const layout = this.layout();
    const imagesInLayout = this.raster && this.images ? this.imagesMsg : null;
    const first = !this.plotted;
    if (first) {
      await Plotly.newPlot(this.plotDiv, traces, layout, config);
      this.plotted = true;
      this.times.plottedEpoch = Date.now();
      this.attachPlotEvents();
    } else {
      await Plotly.react(this.plotDiv, traces, layout, config);
    }
    this.plotDiv.__xlabel = this.times;
    if (!this.raster) return;
    if (imagesInLayout) this.imagesShown(imagesInLayout);
    if (this.imagesMsg && this.imagesMsg !== imagesInLayout) {
      this.applyImages(this.imagesMsg, this.images);      // arrived while plotly drew
    }
    // The first image was asked for before plotly drew: again only if the plot area or
    // ranges came out differently.
    if (!first || !sameView(this.requestedView, this.currentView())) this.requestView();
  }

  // ------------------------------------------------------------------ raster mode

  currentView() {
    const full = this.plotDiv._fullLayout;
    const xa = full.xaxis, ya = full.yaxis;
    return { x0: xa.range[0], x1: xa.range[1], y0: ya.range[0], y1: ya.range[1],
             width: Math.round(xa._length), height: Math.round(ya._length) };
  }

  startFromState() {
    // Raster mode: the widget's state holds all the first draw needs (the extent), so the
    // first image is asked for and the axes drawn as soon as the view is in the page,
    // without waiting for the "data" message (its way back waited behind the kernel's
    // first image: 50-100 ms). The "data" message still comes (the frame count; a newer
    // extent redraws).
    if (!this.model.get("raster_mode") || this.data) return;
    const extent = this.model.get("extent");
    if (extent && extent.x) this.startRaster({ n: null, extent }, null);
  }

  startRaster(data, meta) {
    // Ask for the image of the view plotly's draw will have (unless asked already), then
    // draw the axes: the kernel renders the image while plotly.js loads and draws.
    this.raster = true;
    this.data = data;
    this.meta = meta;
    if (this.t0 === undefined) this.t0 = performance.now();
    const view = this.expectedView();
    if (view && !sameView(view, this.requestedView)) this.requestView(view);
    this.draw();
  }

  expectedView() {
    // The view of plotly's first draw (autorange shows exactly the padded extent: see
    // extentTrace; the plot area is what the margins leave), or null before the widget
    // has a width.
    const width = this.plotDiv.clientWidth;
    const e = this.data.extent;
    if (!width || !e || !e.x) return null;
    const n = this.model.get("panels").length;
    const logY = this.model.get("log_y");
    const xs = this.padded(e.x[0], e.x[1], false), ys = this.padded(e.y[0], e.y[1], logY);
    const axis = (v) => (logY ? Math.log10(v) : v);
    // plotly pads a line trace's y autorange (not its x) by 5% of the plot height on each
    // side: 1/18 of the span (0.05 / (1 - 2 x 0.05)). Should that ever change, the first
    // draw finds the views differ and asks again.
    const pad = (axis(ys[1]) - axis(ys[0])) / 18;
    return { x0: xs[0], x1: xs[1], y0: axis(ys[0]) - pad, y1: axis(ys[1]) + pad,
             width: Math.round((width - MARGIN.l - MARGIN.r) * (1 / n - (n > 1 ? PANEL_GAP : 0))),
             height: Math.round(this.model.get("height") - (n > 1 ? MARGIN.tPanels : MARGIN.t)
                                - MARGIN.b) };
  }

  requestView(view) {
    // One render request in flight at a time; the latest view wins.
    if (this.viewPending) { this.viewDirty = true; return; }
    this.viewPending = true;
    this.viewDirty = false;
    this.times.viewSentAt = performance.now();
    this.times.viewSentEpoch = Date.now();
    this.requestedView = view || this.currentView();
    this.send({ type: "view", ...this.requestedView });
  }

  setImages(msg, buffers) {
    this.times.imageAt = performance.now();
    if (this.times.firstImageEpoch === undefined) this.times.firstImageEpoch = Date.now();
    if (msg.received !== undefined) {     // where the view -> image round trip went (ms)
      this.times.viewTrip = { toKernel: msg.received - this.times.viewSentEpoch,
                              kernel: msg.sent - msg.received, back: Date.now() - msg.sent };
    }
    const v = msg.view;
    const images = buffers.map((buffer, k) => ({
      source: "data:image/png;base64," + base64(buffer),
      xref: k ? `x${k + 1}` : "x", yref: k ? `y${k + 1}` : "y",
      x: v.x0, y: v.y1, sizex: v.x1 - v.x0, sizey: v.y1 - v.y0,
      // Above the grid lines (transparent where there is no point), like markers.
      xanchor: "left", yanchor: "top", sizing: "stretch", layer: "above",
    }));
    if (msg.reason === "view") {
      this.viewPending = false;
    }
    // Before plotly's first draw: the pending draw shows them.
    if (!this.plotted) { this.images = images; this.imagesMsg = msg; return; }
    // A relayout in the middle of a mouse drag ends plotly's lasso: apply at mouse-up.
    if (this.dragging) { this.deferredImages = [msg, images]; return; }
    this.applyImages(msg, images);
  }

  async applyImages(msg, images) {
    this.images = images;
    this.imagesMsg = null;
    this.imaging = true;
    try {
      await this.Plotly.relayout(this.plotDiv, { images: this.images });
    } finally {
      this.imaging = false;
      this.releaseSoon();
    }
    this.imagesShown(msg);
  }

  imagesShown(msg) {
    const now = performance.now();
    this.times.images += 1;
    if (this.times.firstRender === undefined) {
      this.times.firstRender = now - this.t0;
      this.times.firstRenderEpoch = Date.now();
      this.send({ type: "rendered", ms: this.times.firstRender, n: this.data.n });
    }
    if (msg.reason === "update") { this.times.recolors += 1; this.times.recoloredAt = now; }
    if (msg.reason === "select") this.times.selectedAt = now;
    if (msg.reason === "view") this.times.viewAt = now;
    if (msg.reason === "view" && this.viewDirty) this.requestView();
  }

  onRelayout(ev) {
    if (!this.raster || this.imaging || !ev) return;
    this.times.relayoutAt = performance.now();
    if (Object.keys(ev).some((key) => /^[xy]axis[0-9]*\.(range|autorange)/.test(key) ||
                                      /^([xy]axis[0-9]*|width|height|autosize)$/.test(key))) {
      this.requestView();
    }
  }

  onMouseMove(ev) {
    if (!this.raster || !this.plotted || ev.buttons) return;
    const full = this.plotDiv._fullLayout;
    const box = this.plotDiv.getBoundingClientRect();
    const px = ev.clientX - box.left, py = ev.clientY - box.top;
    let panel = -1;
    this.model.get("panels").forEach((_, k) => {
      const xa = full["xaxis" + (k ? k + 1 : "")], ya = full["yaxis" + (k ? k + 1 : "")];
      if (px >= xa._offset && px <= xa._offset + xa._length &&
          py >= ya._offset && py <= ya._offset + ya._length) panel = k;
    });
    if (panel < 0) { this.mouse = null; this.hideTooltip(); return; }
    const xa = full["xaxis" + (panel ? panel + 1 : "")], ya = full["yaxis" + (panel ? panel + 1 : "")];
    this.mouse = { clientX: ev.clientX, clientY: ev.clientY,
                   cx: xa.p2r(px - xa._offset), cy: ya.p2r(py - ya._offset) };
    this.sendHover();
  }

  sendHover() {
    // Throttled: one hover lookup in flight; the newest position goes next.
    if (this.hoverPending || !this.mouse) return;
    this.hoverPending = true;
    this.hoverSeq += 1;
    this.hoverAt = { ...this.mouse };
    this.send({ type: "hover", seq: this.hoverSeq, cx: this.mouse.cx, cy: this.mouse.cy,
                ...this.currentView() });
  }

  showHover(msg) {
    this.hoverPending = false;
    const moved = this.mouse && (this.mouse.cx !== this.hoverAt.cx || this.mouse.cy !== this.hoverAt.cy);
    if (!this.mouse || !msg.lines || !msg.lines.length) this.hideTooltip();
    else {
      this.placeTooltip(msg.lines, this.mouse);
      this.scheduleThumb(msg.index);
    }
    if (moved) this.sendHover();
  }

  placeTooltip(lines, e) {
    if (this.dragging || this.quietAt) return;
    this.tooltip.textContent = lines.join("\n");
    const box = this.root.getBoundingClientRect();
    this.tooltip.style.left = `${(e.clientX || 0) - box.left + 12}px`;
    this.tooltip.style.top = `${(e.clientY || 0) - box.top + 12}px`;
    this.tooltip.style.display = "block";
  }

  attachPlotEvents() {
    const gd = this.plotDiv;
    gd.on("plotly_selected", (ev) => this.onSelected(ev));
    gd.on("plotly_deselect", () => this.onSelected(null));
    gd.on("plotly_hover", (ev) => this.onHover(ev));
    gd.on("plotly_unhover", () => this.hideTooltip());
    gd.on("plotly_relayout", (ev) => this.onRelayout(ev));
  }

  onSelected(ev) {
    // plotly has finished its drag (this event ends it): a held press may go now.
    this.settling = false;
    this.releaseSoon();
    if (this.busy) return;
    this.root.focus({ preventScroll: true });
    if (this.raster) {
      // plotly clears the old selection when a new drag starts: no kernel round trip (and
      // no new image) in the middle of a drag; the mouse-up sends the new outline.
      if (this.dragging) return;
      // Sent at mouse-up already (sendOutline) unless plotly's outline could not be read:
      // then plotly's own events of this drag (selected, or a deselect that plotly may
      // emit after it) must not replace it. The next mouse-down starts over.
      if (!this.polygonSent) this.sendPolygon(ev);
      return;
    }
    const points = (ev && ev.points ? ev.points : []).filter((p) => p.curveNumber < this.nPanels);
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

  sendOutline() {
    // Raster mode, at mouse-up: send the lasso/box outline plotly has drawn (its own
    // polygon, simplified as in lassoPoints) at once. plotly.js emits plotly_selected only
    // after its throttled selection pass (SELECTDELAY, up to 100 ms after the last move).
    const path = this.plotDiv.querySelector(".zoomlayer path.select-outline");
    if (!path || !this.downAt) return;
    const d = path.getAttribute("d") || "";
    if (d.indexOf("M") !== d.lastIndexOf("M")) return;        // merged outlines: plotly's way
    const nums = (d.match(/-?[0-9.]+(e-?[0-9]+)?/g) || []).map(Number);
    if (nums.length < 6) return;
    const id = (path.getAttribute("class").match(/select-outline-(x[0-9]*)(y[0-9]*)/) || [])[1];
    const panel = id ? panelOfAxis(id) : 0;
    const suffix = panel ? String(panel + 1) : "";
    const full = this.plotDiv._fullLayout;
    const xa = full["xaxis" + suffix], ya = full["yaxis" + suffix];
    const box = this.plotDiv.getBoundingClientRect();
    // The outline must be this drag's: it starts where the mouse went down.
    const dx = nums[0] + xa._offset + box.left - this.downAt[0];
    const dy = nums[1] + ya._offset + box.top - this.downAt[1];
    if (Math.abs(dx) > 2 || Math.abs(dy) > 2) return;
    const xs = [], ys = [];
    for (let i = 0; i + 1 < nums.length; i += 2) { xs.push(xa.p2r(nums[i])); ys.push(ya.p2r(nums[i + 1])); }
    this.polygonSent = true;
    this.times.selections += 1;
    this.times.polygonAt = performance.now();
    this.send({ type: "polygon", panel, n: xs.length },
              [Float64Array.from(xs).buffer, Float64Array.from(ys).buffer]);
  }

  sendPolygon(ev) {
    // The lasso (or box) travels to the kernel in axis units; the kernel finds the frames.
    let xs = [], ys = [], panel = 0;
    if (ev && ev.lassoPoints) {
      const xKey = Object.keys(ev.lassoPoints).find((key) => key[0] === "x");
      const yKey = Object.keys(ev.lassoPoints).find((key) => key[0] === "y");
      if (xKey && yKey) { xs = ev.lassoPoints[xKey]; ys = ev.lassoPoints[yKey]; panel = panelOfAxis(xKey); }
    } else if (ev && ev.range) {
      const xKey = Object.keys(ev.range).find((key) => key[0] === "x");
      const yKey = Object.keys(ev.range).find((key) => key[0] === "y");
      if (xKey && yKey) {
        const [a, b] = ev.range[xKey], [c, d] = ev.range[yKey];
        xs = [a, b, b, a]; ys = [c, c, d, d]; panel = panelOfAxis(xKey);
      }
    }
    // plotly reports data values (p2d): on a log axis the kernel wants log10 (axis units).
    const full = this.plotDiv._fullLayout;
    const suffix = panel ? String(panel + 1) : "";
    const toAxis = (ax) => (ax && ax.type === "log" ? (v) => Math.log10(v) : (v) => v);
    xs = xs.map(toAxis(full["xaxis" + suffix]));
    ys = ys.map(toAxis(full["yaxis" + suffix]));
    this.times.selections += 1;
    this.times.polygonAt = performance.now();
    if (xs.length < 3) {
      this.send({ type: "selected", panel }, [new Int32Array(0).buffer]);
      return;
    }
    this.send({ type: "polygon", panel, n: xs.length },
              [Float64Array.from(xs).buffer, Float64Array.from(ys).buffer]);
  }

  // ------------------------------------------------------------------ presses held while plotly settles

  // plotly.js ends a lasso/box drag only after its throttled selection pass has run
  // (SELECTDELAY, up to 100 ms after the last move; one throttle per plot). It then
  // turns the outline in its zoom layer into layout.selections (a relayout) and emits
  // plotly_selected. A new drag pressed within that window restarts the shared
  // throttle, so the old drag's ending runs in the middle of the new drag and takes the
  // new, half-drawn outline with it: the new lasso is lost ("0 selected"). Raster mode
  // sends the outline at mouse-up, so its answer arrives well inside that window.
  // A press that comes while plotly is still ending a drag (or while one of our own
  // relayouts/restyles is in flight) is therefore held, with the moves and the release
  // that follow it, and replayed in order as soon as plotly is done.

  startSettling() {
    // Called at mouse-up, before plotly's own handler: did plotly see a select drag?
    const gd = this.plotDiv;
    if (!gd._dragged || !gd.querySelector(".zoomlayer path.select-outline")) return;
    this.settling = true;
    clearTimeout(this.settleTimer);
    this.settleTimer = setTimeout(() => { this.settling = false; this.releaseSoon(); },
                                  SETTLE_MAX_MS);
  }

  isSettled() {
    return !this.settling && !this.imaging && !this.busy;
  }

  holdPress(ev) {
    if (this.replaying || (!this.held && this.isSettled())) return false;
    if (ev.target.closest && ev.target.closest(".modebar")) return false;   // a click
    if (!this.held) {
      this.held = [];
      this.onHeldMove = (move) => this.holdEvent(move);
      window.addEventListener("mousemove", this.onHeldMove, true);
      // Never hold the user's hand for long, whatever plotly does.
      this.holdTimer = setTimeout(() => this.replayHeld(true), 3 * SETTLE_MAX_MS);
    }
    return this.holdEvent(ev);
  }

  holdEvent(ev) {
    // While a press is held, it and every mouse event after it wait their turn.
    if (!this.held || this.replaying) return false;
    ev.stopPropagation();
    ev.preventDefault();
    const init = { bubbles: true, cancelable: true, composed: true, view: window };
    for (const key of MOUSE_FIELDS) init[key] = ev[key];
    this.held.push({ type: ev.type, target: ev.type === "mousedown" ? ev.target : null, init });
    return true;
  }

  releaseSoon() {
    // After the handlers of the event that settled plotly (its relayout included).
    if (this.held) setTimeout(() => this.replayHeld(), 0);
  }

  replayHeld(force = false) {
    if (!this.held || (!force && !this.isSettled())) return;
    this.replaying = true;
    try {
      while (this.held.length) {
        const { type, target, init } = this.held.shift();
        let to = document;          // plotly follows a drag on the document
        if (type === "mousedown") {
          to = target && target.isConnected ? target
            : document.elementFromPoint(init.clientX, init.clientY);
        }
        (to || document).dispatchEvent(new MouseEvent(type, init));
        if (type === "mouseup" && !force && !this.isSettled()) return;   // the next press waits again
      }
    } finally {
      this.replaying = false;
      if (this.held && !this.held.length) {
        window.removeEventListener("mousemove", this.onHeldMove, true);
        clearTimeout(this.holdTimer);
        this.held = null;
      }
    }
  }

  linkPanels(panel, indices) {
    // Show the selection in the other panels at once, without touching the one that
    // holds the lasso outline.
    const others = this.model.get("panels").map((_, k) => k).filter((k) => k !== panel);
    if (!others.length) return;
    const points = indices.length ? Array.from(indices) : null;
    this.busy = true;
    this.Plotly.restyle(this.plotDiv, { selectedpoints: others.map(() => points) }, others)
      .finally(() => { this.busy = false; this.releaseSoon(); });
  }

  async applySelection(indices) {
    const Plotly = this.Plotly;
    const gd = this.plotDiv;
    this.selection = indices;
    if (!this.plotted) return;        // the pending first draw shows it
    this.busy = true;
    try {
      // The browser keeps the lasso outline in layout.selections and would re-apply it
      // over selectedpoints: drop it first.
      if (gd.layout.selections && gd.layout.selections.length) {
        await Plotly.relayout(gd, { selections: [] });
      }
      if (this.raster) return;       // the kernel's image shows the selection
      const points = indices.length ? Array.from(indices) : null;
      const all = this.model.get("panels").map((_, k) => k);
      await Plotly.restyle(gd, { selectedpoints: all.map(() => points) }, all);
    } finally {
      this.busy = false;
      this.releaseSoon();
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
    if (!this.plotted) return;         // the pending first draw uses the new codes
    if (msg.palette) {
      await this.draw();
    } else {
      await this.Plotly.restyle(this.plotDiv, { "marker.color": [this.colorArray(panel)] }, [panel]);
    }
    this.times.recolors += 1;
    this.times.recoloredAt = performance.now();
  }

  setXY(msg, buffers) {
    if (msg.raster) {
      this.data.extent = msg.extent;
    } else {
      this.data.x = typed(Float32Array, buffers[0]);
      this.data.y = typed(Float32Array, buffers[1]);
    }
    this.xyVersion = (this.xyVersion || 0) + 1;
    this.images = null;
    this.imagesMsg = null;
    this.draw();
  }

  onHover(ev) {
    const point = ev && ev.points && ev.points.find((q) => q.curveNumber < this.nPanels);
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
    this.placeTooltip(lines, ev.event || {});
    this.scheduleThumb(i);
  }
}

// When the latest initialize() ran (epoch ms: started, plotly.js evaluated), for the
// first-render stages of bench/bench_widgets_browser.py.
let initialized;

function initialize({ model }) {
  const started = Date.now();
  // Load plotly.js as soon as the widget exists in the page: it arrives and is evaluated
  // while JupyterLab creates the view (measured: faster than evaluating it after the
  // first image was asked for, bench/bench_widgets_browser.py).
  loadPlotly(model, bundleOf(model)).catch(() => {});    // the first draw reports it
  initialized = [started, Date.now()];
}

async function render({ model, el: root }) {
  const renderEpoch = Date.now();
  const view = new ScatterView(model, root);
  view.times.renderEpoch = renderEpoch;
  view.times.initialized = initialized;
  const onMsg = (msg, buffers) => view.onMessage(msg, buffers);
  model.on("msg:custom", onMsg);
  const redraw = () => { if (view.data) view.draw(); };
  model.on("change:status", () => view.renderStatus());
  model.on("change:legends", () => view.renderLegend());
  model.on("change:buttons", () => view.renderButtons());
  model.on("change:tag_names change:tag_tools", () => view.renderTags());
  // Raster mode: the kernel answers a log-y change with an "xy" message (new extent).
  model.on("change:log_y", () => { if (!view.raster) redraw(); });
  model.on("change:panels", redraw);
  model.on("change:palettes", redraw);
  model.on("change:x_name change:y_name change:columns change:color_options change:color_by",
    () => view.renderControls());
  // The data (and in raster mode the first image) come while plotly.js loads.
  view.times.readyEpoch = Date.now();
  model.send({ type: "ready" });
  // The view is in the page (and has a width) by the next frame.
  requestAnimationFrame(() => view.startFromState());
  return () => {
    model.off("msg:custom", onMsg);
    window.removeEventListener("mouseup", view.onMouseUp, true);
    if (view.plotted) view.Plotly.purge(view.plotDiv);
  };
}

export default { initialize, render };
