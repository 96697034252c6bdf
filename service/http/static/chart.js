// A small time chart on a <canvas>: lines and dots over the last few minutes, no library.
// series: [{color, dash (optional [on, off]), dots (bool), points: [{t (ms since epoch), v}]}]
"use strict";

// Okabe-Ito colours (readable for colour-blind viewers), one per exit
const EXIT_COLORS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#999999"];
const MIN_SPAN_MS = 20000;

class TimeChart {
  constructor(canvas, { windowMs = 180000, unit = "ms" } = {}) {
    this.canvas = canvas;
    this.windowMs = windowMs;
    this.unit = unit;
  }

  draw(series, now = Date.now()) {
    const { canvas } = this;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);

    const pad = { left: 48, right: 10, top: 10, bottom: 22 };
    // the window grows from the first point up to windowMs, so a fresh page's points are not squeezed at the edge
    const first = Math.min(now - MIN_SPAN_MS, ...series.flatMap((s) => s.points.map((p) => p.t)));
    const start = Math.max(now - this.windowMs, first);
    const span = now - start;
    const visible = series.map((s) => ({ ...s, points: s.points.filter((p) => p.t >= start) }));
    const top = niceCeiling(Math.max(0, ...visible.flatMap((s) => s.points.map((p) => p.v))));
    const x = (t) => pad.left + ((t - start) / span) * (width - pad.left - pad.right);
    const y = (v) => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom);

    this.axes(ctx, { width, height, pad, top, y, span });
    for (const s of visible) {
      ctx.strokeStyle = ctx.fillStyle = s.color;
      if (s.dots) {
        for (const p of s.points) {
          ctx.beginPath();
          ctx.arc(x(p.t), y(p.v), 3.5, 0, 2 * Math.PI);
          ctx.fill();
        }
        continue;
      }
      ctx.lineWidth = 2;
      ctx.setLineDash(s.dash || []);
      ctx.beginPath();
      s.points.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.v)) : ctx.moveTo(x(p.t), y(p.v))));
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }

  axes(ctx, { width, height, pad, top, y, span }) {
    ctx.strokeStyle = "#ccc";
    ctx.fillStyle = "#333";
    ctx.lineWidth = 1;
    ctx.font = "12px system-ui, sans-serif";
    for (let i = 0; i <= 4; i++) {
      const v = (top * i) / 4;
      ctx.beginPath();
      ctx.moveTo(pad.left, y(v));
      ctx.lineTo(width - pad.right, y(v));
      ctx.stroke();
      ctx.fillText(`${+v.toPrecision(3)} ${this.unit}`, 2, y(v) + 4);
    }
    ctx.fillText(`last ${Math.round(span / 1000)} s → now`, width - pad.right - 110, height - 6);
  }
}

// the smallest 1, 2 or 5 × 10^n at or above v (an empty chart gets 1)
function niceCeiling(v) {
  if (!(v > 0)) return 1;
  const base = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * base).find((c) => c >= v);
}

if (typeof module !== "undefined") module.exports = { TimeChart, niceCeiling, EXIT_COLORS };
