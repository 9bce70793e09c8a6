// Small SVG charts drawn in the page (no library, nothing fetched): line charts for ROC, calibration
// and per-round progress, horizontal bars for budget use. Each chart is an image with a text label.
const NS = "http://www.w3.org/2000/svg";
const COLOURS = ["#0b5cad", "#c2410c", "#17633a", "#7c3aed", "#a11b1b"];

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function frame(width, height, label) {
  const svg = el("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  svg.appendChild(el("title", {}, label));
  return svg;
}

// series: [{name, points: [[x, y], ...]}]; x and y in [xMin, xMax] × [yMin, yMax].
export function lineChart({ label, series, xLabel, yLabel, domain = [0, 1, 0, 1], diagonal = false, width = 360, height = 300 }) {
  const [x0, x1, y0, y1] = domain;
  const pad = { l: 44, r: 12, t: 12, b: 40 };
  const w = width - pad.l - pad.r, h = height - pad.t - pad.b;
  const sx = (x) => pad.l + ((x - x0) / (x1 - x0 || 1)) * w;
  const sy = (y) => pad.t + h - ((y - y0) / (y1 - y0 || 1)) * h;
  const svg = frame(width, height, label);
  svg.appendChild(el("rect", { x: pad.l, y: pad.t, width: w, height: h, fill: "none", stroke: "#c9ced6" }));
  for (let i = 0; i <= 4; i += 1) {
    const fx = x0 + ((x1 - x0) * i) / 4, fy = y0 + ((y1 - y0) * i) / 4;
    svg.appendChild(el("text", { x: sx(fx), y: height - pad.b + 14, "text-anchor": "middle" }, round(fx)));
    svg.appendChild(el("text", { x: pad.l - 6, y: sy(fy) + 4, "text-anchor": "end" }, round(fy)));
  }
  svg.appendChild(el("text", { x: pad.l + w / 2, y: height - 6, "text-anchor": "middle" }, xLabel));
  svg.appendChild(el("text", { x: 12, y: pad.t + h / 2, transform: `rotate(-90 12 ${pad.t + h / 2})`, "text-anchor": "middle" }, yLabel));
  if (diagonal) svg.appendChild(el("line", { x1: sx(x0), y1: sy(y0), x2: sx(x1), y2: sy(y1), stroke: "#9aa3ad", "stroke-dasharray": "4 4" }));
  series.forEach((s, index) => {
    const d = s.points.map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    svg.appendChild(el("path", { d, fill: "none", stroke: COLOURS[index % COLOURS.length], "stroke-width": 2 }));
    svg.appendChild(el("text", { x: pad.l + 8, y: pad.t + 16 + 14 * index, fill: COLOURS[index % COLOURS.length] }, s.name));
  });
  return svg;
}

// rows: [{label, used, cap}] drawn as used / cap bars.
export function budgetBars({ label, rows, width = 480 }) {
  const rowHeight = 28, labelWidth = 170, barWidth = width - labelWidth - 70;
  const svg = frame(width, rows.length * rowHeight + 10, label);
  rows.forEach((row, i) => {
    const y = 5 + i * rowHeight;
    const share = row.cap > 0 ? Math.min(row.used / row.cap, 1) : 0;
    svg.appendChild(el("text", { x: 0, y: y + 16 }, row.label));
    svg.appendChild(el("rect", { x: labelWidth, y: y + 4, width: barWidth, height: 16, fill: "#e3e7ee" }));
    svg.appendChild(el("rect", { x: labelWidth, y: y + 4, width: barWidth * share, height: 16, fill: share > 0.9 ? "#a11b1b" : "#0b5cad" }));
    svg.appendChild(el("text", { x: labelWidth + barWidth + 6, y: y + 16 }, `${round(row.used)} / ${round(row.cap)}`));
  });
  return svg;
}

function round(value) { return Math.abs(value) >= 10 ? value.toFixed(0) : value.toFixed(2); }
