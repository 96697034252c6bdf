// The live charts: the server's per-exit latency profile, read from GET /v1/model every 2 s (nothing made up
// here: each point is a figure the server reported), and the latencies of this page's own answers.
"use strict";

const POLL_MS = 2000;
const KEEP_MS = 180000;

class LiveCharts {
  constructor({ profileCanvas, answersCanvas, legend }) {
    this.profileChart = new TimeChart(profileCanvas, { windowMs: KEEP_MS });
    this.answersChart = new TimeChart(answersCanvas, { windowMs: KEEP_MS });
    this.legend = legend;
    this.profile = []; // per exit: {name, p50: [{t, v}], p99: [{t, v}]}
    this.answers = []; // per exit: [{t, v}]
  }

  start() {
    this.poll();
    setInterval(() => this.poll(), POLL_MS);
    window.addEventListener("resize", () => this.draw());
  }

  async poll() {
    if (document.hidden) return; // nobody is looking: no requests (and no access-log lines) for nothing
    let model;
    try {
      const response = await fetch("/v1/model", { cache: "no-store" });
      if (!response.ok) return;
      model = await response.json();
    } catch {
      return; // the server is restarting or gone: keep the last points, try again next time
    }
    const now = Date.now();
    model.exits.forEach((exit, k) => {
      const series = (this.profile[k] ||= { name: exit.name, p50: [], p99: [] });
      const warm = exit.latency["1"]; // batch size 1, warm: one request at a time, as this page sends them
      if (!warm) return;
      series.p50.push({ t: now, v: warm.p50_ms });
      series.p99.push({ t: now, v: warm.p99_ms });
      series.latest = warm;
    });
    this.forget(now);
    this.draw();
  }

  addAnswer(answer) {
    (this.answers[answer.exit] ||= []).push({ t: Date.now(), v: answer.latency_ms });
    this.forget(Date.now());
    this.draw();
  }

  forget(now) {
    const keep = (points) => points.filter((p) => p.t >= now - KEEP_MS);
    for (const s of this.profile) {
      s.p50 = keep(s.p50);
      s.p99 = keep(s.p99);
    }
    this.answers = Array.from(this.answers, (points) => points && keep(points));
  }

  draw() {
    const color = (k) => EXIT_COLORS[k % EXIT_COLORS.length];
    this.profileChart.draw(
      this.profile.flatMap((s, k) => [
        { color: color(k), points: s.p50 },
        { color: color(k), dash: [6, 4], points: s.p99 },
      ]),
    );
    // Array.from, not map: exits without answers yet are holes in the array
    this.answersChart.draw(Array.from(this.answers, (points, k) => ({ color: color(k), dots: true, points: points || [] })));
    this.legend.replaceChildren(
      ...this.profile.map((s, k) => {
        const item = document.createElement("li");
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = color(k);
        const figures = s.latest ? `p50 ${s.latest.p50_ms.toFixed(3)} ms, p99 ${s.latest.p99_ms.toFixed(3)} ms` : "no samples yet";
        item.append(swatch, `exit ${k} (${s.name}): ${figures}`);
        return item;
      }),
    );
  }
}
