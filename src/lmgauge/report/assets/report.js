// lmgauge report viewer: vanilla JS, no network. Every text from a run is put into the page with
// textContent or as an SVG text node, never as HTML, so model and dataset text cannot run.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var ROW_H = 28;
  var SVGNS = "http://www.w3.org/2000/svg";

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "cls") e.className = attrs[k];
      else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c != null) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }
  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function pct(v) { return isNum(v) ? (v * 100).toFixed(2) : "-"; }
  function fmt(v, binary) {
    if (!isNum(v)) return v == null ? "-" : String(v);
    if (binary || (v >= 0 && v <= 1)) return (v * 100).toFixed(2);
    return Math.abs(v) >= 1e6 ? v.toExponential(3) : v.toFixed(4);
  }
  // a metric that is not a proportion (perplexity, bits per byte, log-likelihood) never reads as a percentage
  function plain(v) { return !isNum(v) ? "-" : Math.abs(v) >= 1e6 ? v.toExponential(3) : v.toFixed(4); }
  function metricText(m) { return m.binary ? pct(m.value) : plain(m.value); }
  function signed(v, scale) { return isNum(v) ? (v >= 0 ? "+" : "") + (v * scale).toFixed(2) : "-"; }
  function numCell(v, text, cls) { return el("td", { cls: "num " + (cls || ""), "data-value": isNum(v) ? String(v) : "", text: text }); }
  function table(headers, rows, id) {
    var t = el("table", id ? { id: id } : null);
    t.appendChild(el("tr", null, headers.map(function (h) { return el("th", { text: h }); })));
    rows.forEach(function (r) { t.appendChild(r); });
    return t;
  }
  function section(id, title) {
    var s = el("section", { id: id }, [el("h2", { text: title })]);
    document.getElementById("main").appendChild(s);
    document.getElementById("nav").appendChild(el("a", { href: "#" + id, text: title, onclick: function (ev) { ev.preventDefault(); s.scrollIntoView(); } }));
    return s;
  }
  function ciText(ci, binary) { return ci ? "[" + fmt(ci[0], binary) + ", " + fmt(ci[1], binary) + "]" : "-"; }

  // ---------- header ----------
  document.title = DATA.title;
  document.getElementById("title").textContent = DATA.title;
  document.getElementById("meta").textContent = "generated " + DATA.generated + " by lmgauge " + DATA.lmgauge_version +
    " | " + DATA.runs.map(function (r) { return r.key + ": " + r.root + " (" + (r.status || "?") + ")"; }).join(" | ");

  // all samples, flat, for the browser
  var ALL = [];
  var TASKS = {};
  DATA.runs.forEach(function (run, ri) {
    run.tasks.forEach(function (t) {
      TASKS[ri + "\u0000" + t.model + "\u0000" + t.task] = t;
      t.samples.forEach(function (s) { ALL.push({ ri: ri, t: t, s: s }); });
    });
  });
  var FLIPS = {};
  var CMP = DATA.comparison;
  if (CMP) CMP.flipped.forEach(function (f) { FLIPS[f.task + "\u0000" + f.doc_id] = f; });
  function sampleKey(x) { return x.t.task + "\u0000" + x.s.doc_id; }

  // ---------- summary ----------
  DATA.runs.forEach(function (run) {
    var s = section("summary-" + run.key, "Summary" + (DATA.runs.length > 1 ? " (" + run.key + ": " + run.id + ")" : ""));
    var rows = run.summary.rows.map(function (r) {
      var tr = el("tr");
      r.forEach(function (v, i) { tr.appendChild(i < 4 ? el("td", { text: v == null ? "-" : String(v) }) : numCell(v, fmt(v))); });
      return tr;
    });
    s.appendChild(el("div", { cls: "muted", text: "accuracies in %; perplexities as numbers" }));
    s.appendChild(table(run.summary.columns, rows, "summary-table-" + run.key));
  });

  // ---------- tasks ----------
  DATA.runs.forEach(function (run) {
    var s = section("tasks-" + run.key, "Tasks" + (DATA.runs.length > 1 ? " (" + run.key + ")" : ""));
    var rows = [];
    run.tasks.forEach(function (t) {
      if (!t.metrics.length) {
        var why = t.error ? el("details", null, [el("summary", { text: t.status + ": " + t.error.split("\n")[0].slice(0, 120) }), el("pre", { text: t.error })]) : t.status;
        rows.push(el("tr", null, [el("td", { text: t.model }), el("td", { text: t.task }), el("td", { cls: "err" }, [why]), el("td"), el("td"), el("td")]));
      }
      t.metrics.forEach(function (m) {
        var tr = el("tr", { "data-task": t.task, "data-model": t.model, "data-metric": m.name });
        tr.appendChild(el("td", { text: t.model }));
        tr.appendChild(el("td", { text: t.task }));
        tr.appendChild(el("td", { text: m.name }));
        tr.appendChild(numCell(m.value, metricText(m), "metric-value"));
        tr.appendChild(el("td", { cls: "num", text: m.ci ? "[" + (m.binary ? pct(m.ci[0]) : plain(m.ci[0])) + ", " + (m.binary ? pct(m.ci[1]) : plain(m.ci[1])) + "]" : "-" }));
        tr.appendChild(numCell(m.n, m.n == null ? "-" : String(m.n), "metric-n"));
        rows.push(tr);
      });
    });
    s.appendChild(el("div", { cls: "muted", text: "95% interval: Wilson for accuracies, value \u00b1 1.96 stderr otherwise" }));
    s.appendChild(table(["model", "task", "metric", "value", "95% interval", "n"], rows, "tasks-table-" + run.key));
  });

  // ---------- groups: subjects and categories ----------
  function barChart(items, binary) {
    // items: [{label, value, ci}] -> horizontal bars with interval whiskers
    var W = 760, L = 230, H = 18 * items.length + 30, maxV = binary ? 1 : Math.max.apply(null, items.map(function (i) { return (i.ci ? i.ci[1] : i.value) || 0; }).concat([1e-9]));
    var g = svg("svg", { width: W, height: H, role: "img" });
    function x(v) { return L + (W - L - 20) * Math.max(0, Math.min(1, v / maxV)); }
    items.forEach(function (it, i) {
      var y = 10 + i * 18;
      g.appendChild(svg("text", { x: L - 6, y: y + 11, "text-anchor": "end" }, it.label));
      g.appendChild(svg("rect", { x: L, y: y + 2, width: Math.max(0, x(it.value || 0) - L), height: 12, fill: "#9db4f0" }));
      if (it.ci) g.appendChild(svg("line", { x1: x(it.ci[0]), x2: x(it.ci[1]), y1: y + 8, y2: y + 8, stroke: "#1d2330" }));
      g.appendChild(svg("text", { x: W - 16, y: y + 11, "text-anchor": "end" }, fmt(it.value, binary)));
    });
    return el("div", { cls: "chart" }, [g]);
  }
  DATA.runs.forEach(function (run) {
    if (!run.groups.length) return;
    var s = section("groups-" + run.key, "Subjects and categories" + (DATA.runs.length > 1 ? " (" + run.key + ")" : ""));
    run.groups.forEach(function (g) {
      s.appendChild(el("h3", { text: g.model + " | " + g.group + " (" + g.members.length + " subjects, n=" + g.n + ")" }));
      var rows = [];
      Object.keys(g.metrics).forEach(function (name) {
        ["micro", "macro"].forEach(function (kind) {
          var m = g.metrics[name][kind];
          rows.push(el("tr", { "data-group": g.group, "data-metric": name + " (" + kind + ")" }, [el("td", { text: g.group }), el("td", { text: name + " (" + kind + ")" }), numCell(m.value, fmt(m.value, true), "metric-value"), el("td", { cls: "num", text: ciText(m.ci, true) }), numCell(m.n, String(m.n))]));
        });
      });
      Object.keys(g.categories).sort().forEach(function (c) {
        Object.keys(g.categories[c]).forEach(function (name) {
          var m = g.categories[c][name].micro;
          rows.push(el("tr", { "data-group": g.group + "_" + c, "data-metric": name + " (micro)" }, [el("td", { text: g.group + "_" + c }), el("td", { text: name + " (micro)" }), numCell(m.value, fmt(m.value, true), "metric-value"), el("td", { cls: "num", text: ciText(m.ci, true) }), numCell(m.n, String(m.n))]));
        });
      });
      s.appendChild(table(["group / category", "metric", "value", "95% interval", "n"], rows));
      var first = Object.keys(g.metrics)[0];
      if (first) {
        var items = Object.keys(g.subjects).map(function (sub) { var m = g.subjects[sub][first] || {}; return { label: sub, value: m.value, ci: m.ci }; });
        items.sort(function (a, b) { return (b.value || 0) - (a.value || 0); });
        s.appendChild(el("div", { cls: "muted", text: "per subject " + first + " (%), 95% interval" }));
        s.appendChild(barChart(items, true));
      }
    });
  });

  // ---------- perplexity ----------
  var PPL = ["perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "token_perplexity"];
  (function () {
    var rows = [];
    DATA.runs.forEach(function (run) {
      run.tasks.forEach(function (t) {
        t.metrics.forEach(function (m) {
          if (PPL.indexOf(m.name) >= 0) rows.push(el("tr", null, [el("td", { text: run.key }), el("td", { text: t.model }), el("td", { text: t.task }), el("td", { text: m.name }), numCell(m.value, plain(m.value)), numCell(m.n, m.n == null ? "-" : String(m.n))]));
        });
      });
    });
    if (!rows.length) return;
    var s = section("perplexity", "Perplexity");
    s.appendChild(table(["run", "model", "task", "metric", "value", "n"], rows, "ppl-table"));
  })();

  // ---------- time and throughput ----------
  (function () {
    var rows = [];
    DATA.runs.forEach(function (run) {
      Object.keys(run.models || {}).forEach(function (m) {
        var info = run.models[m] || {}, tok = info.tokens || {};
        var tps = isNum(tok.forwarded) && isNum(info.eval_s) && info.eval_s > 0 ? tok.forwarded / info.eval_s : null;
        rows.push(el("tr", null, [el("td", { text: run.key }), el("td", { text: m }), el("td", { text: [info.backend, info.device, info.dtype].filter(Boolean).join(" / ") }), numCell(info.load_s, isNum(info.load_s) ? info.load_s.toFixed(1) : "-"), numCell(info.eval_s, isNum(info.eval_s) ? info.eval_s.toFixed(1) : "-"), numCell(tok.forwarded, tok.forwarded == null ? "-" : String(tok.forwarded)), numCell(tps, isNum(tps) ? tps.toFixed(0) : "-"), numCell((info.peak_memory || {}).rss_mb, (info.peak_memory || {}).rss_mb == null ? "-" : String(info.peak_memory.rss_mb))]));
      });
    });
    if (!rows.length) return;
    var s = section("timing", "Time and throughput");
    s.appendChild(table(["run", "model", "backend", "load s", "eval s", "tokens forwarded", "tokens/s", "peak RSS MB"], rows));
    var lat = [];
    DATA.runs.forEach(function (run) {
      (run.tasks || []).forEach(function (t) {
        var l = t.latency;
        if (!l) return;
        var ms = function (v) { return numCell(v, isNum(v) ? v.toFixed(1) : "-"); };
        lat.push(el("tr", null, [el("td", { text: run.key }), el("td", { text: t.model }), el("td", { text: t.task }), numCell(l.requests, String(l.requests)), ms(l.mean_e2el_ms), ms(l.median_e2el_ms), ms(l.p90_e2el_ms), ms(l.p99_e2el_ms), ms(l.mean_ttft_ms), ms(l.p99_ttft_ms), numCell(l.retried, String(l.retried || 0))]));
      });
    });
    if (lat.length) {
      s.appendChild(el("h3", { text: "request latency of served models (ms, as the accuracy run's load made it)" }));
      s.appendChild(table(["run", "model", "task", "requests", "mean E2EL", "median E2EL", "p90 E2EL", "p99 E2EL", "mean TTFT", "p99 TTFT", "retried"], lat, "request-latency-table"));
    }
    DATA.runs.forEach(function (run) {
      var pf = run.perf;
      if (!pf) return;
      if (pf.serving.length) {
        s.appendChild(el("h3", { text: "serving latency and throughput (" + run.key + ", lmgauge perf)" }));
        s.appendChild(table(["point"].concat(pf.serving_keys), pf.serving.map(function (pt) {
          if (pt.error) return el("tr", null, [el("td", { text: pt.label }), el("td", { cls: "err", text: pt.error })]);
          return el("tr", null, [el("td", { text: pt.label })].concat(pf.serving_keys.map(function (k) { var v = pt[k]; return numCell(v, isNum(v) ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : v == null ? "-" : String(v)); })));
        }), "serving-table-" + run.key));
      }
      pf.inprocess.forEach(function (t) {
        s.appendChild(el("h3", { text: "in-process latency (" + run.key + "): " + t.file }));
        s.appendChild(table(t.header, t.rows.map(function (r) { return el("tr", null, r.map(function (c) { return el("td", { cls: "num", text: c }); })); })));
      });
    });
  })();

  // ---------- compression: each position against pretrain ----------
  DATA.runs.forEach(function (run) {
    var c = run.compression;
    if (!c) return;
    var s = section("compression-" + run.key, "Compression (" + run.key + ")");
    function f4(v) { return isNum(v) ? v.toFixed(4) : "-"; }
    var rows = c.rows.map(function (r) {
      var cls = r.verdict === "worse" ? "bad" : r.verdict === "better" ? "good" : "";
      return el("tr", { "data-position": r.position, "data-task": r.task, "data-metric": r.metric }, [
        el("td", { text: r.position }), el("td", { text: r.kind || "" }), el("td", { text: r.task }), el("td", { text: r.metric }),
        numCell(r.pretrain, f4(r.pretrain)), numCell(r.value, f4(r.value)), numCell(r.delta, isNum(r.delta) ? (r.delta >= 0 ? "+" : "") + r.delta.toFixed(4) : "-", cls),
        el("td", { cls: "num", text: isNum(r.low) ? "[" + f4(r.low) + ", " + f4(r.high) + "]" + (r.interval_of === "ppl ratio" ? " (ratio)" : "") : "-" }),
        numCell(r.p, isNum(r.p) ? r.p.toPrecision(3) : "-"), numCell(r.right_to_wrong, r.right_to_wrong == null ? "-" : String(r.right_to_wrong)),
        numCell(r.wrong_to_right, r.wrong_to_right == null ? "-" : String(r.wrong_to_right)), numCell(r.recovery, isNum(r.recovery) ? r.recovery.toFixed(4) : "-"),
        el("td", { cls: cls, text: r.verdict || "-" })
      ]);
    });
    s.appendChild(el("div", { cls: "muted", text: "each position against pretrain, as lmgauge compress wrote it" }));
    s.appendChild(table(["position", "kind", "task", "metric", "pretrain", "value", "\u0394", "95% interval", "mid-p", "right\u2192wrong", "wrong\u2192right", "recovery", "verdict"], rows, "compression-table-" + run.key));
    if (c.fidelity.length) {
      var fr = c.fidelity.map(function (f) {
        var k = f.kl || {}, r = f.ln_ppl_ratio || {};
        return el("tr", null, [el("td", { text: f.position }), el("td", { text: f.task }), numCell(f.n_positions, String(f.n_positions)), numCell(k.mean, isNum(k.mean) ? k.mean.toFixed(6) : "-"), numCell(k.p99, isNum(k.p99) ? k.p99.toFixed(6) : "-"), numCell((f.same_top || {}).value, pct((f.same_top || {}).value)), numCell(r.value, isNum(r.value) ? r.value.toFixed(6) : "-")]);
      });
      s.appendChild(el("h3", { text: "next-token fidelity against pretrain" }));
      s.appendChild(table(["position", "corpus", "tokens", "KL mean", "KL p99", "same top %", "ln PPL ratio"], fr));
    }
    if (c.manifest) s.appendChild(el("details", null, [el("summary", { text: "compression config and positions" }), el("pre", { text: JSON.stringify(c.manifest, null, 2) })]));
  });

  // ---------- comparison ----------
  if (CMP) (function () {
    var s = section("comparison", "Comparison: B \u2212 A");
    s.appendChild(el("div", { cls: "muted", text: "A = " + CMP.run_a + ", B = " + CMP.run_b + "; \u0394 = B \u2212 A in points; binary metrics: McNemar mid-p and Newcombe interval; others: paired bootstrap (" + CMP.n_resamples + " resamples, seed " + CMP.seed + ")" }));
    CMP.warnings.forEach(function (w) { s.appendChild(el("div", { cls: "warn", text: "\u26a0 " + w })); });
    var rows = CMP.rows.map(function (r) {
      var st = r.stats || {}, scale = (st.method === "mcnemar" || (isNum(r.value_a) && Math.abs(r.value_a) <= 1)) ? 100 : 1;
      var cls = st.verdict === "worse" ? "bad" : st.verdict === "better" ? "good" : "";
      var fl = st.flips;
      return el("tr", { "data-name": r.name, "data-metric": r.metric, "data-level": r.level }, [
        el("td", { text: r.level }), el("td", { text: r.name }), el("td", { text: r.metric }),
        numCell(r.value_a, fmt(r.value_a)), numCell(r.value_b, fmt(r.value_b)),
        numCell(r.delta, signed(r.delta, scale), "delta " + cls),
        el("td", { cls: "num", text: st.low != null ? "[" + signed(st.low, scale) + ", " + signed(st.high, scale) + "]" : "-" }),
        numCell(st.p_value, isNum(st.p_value) ? st.p_value.toPrecision(3) : "-"),
        el("td", { cls: cls, text: st.verdict || "no paired interval" }),
        numCell(fl ? fl.right_to_wrong : null, fl ? String(fl.right_to_wrong) : "-", "r2w"),
        numCell(fl ? fl.wrong_to_right : null, fl ? String(fl.wrong_to_right) : "-", "w2r"),
        numCell(st.n, st.n == null ? "-" : String(st.n))
      ]);
    });
    s.appendChild(table(["level", "name", "metric", "A", "B", "\u0394", "95% interval", "p (mid-p)", "verdict", "right\u2192wrong", "wrong\u2192right", "n"], rows, "compare-table"));
    if (CMP.config_diff.length) s.appendChild(el("details", null, [el("summary", { text: "config differences (" + CMP.config_diff.length + ")" }), el("pre", { text: CMP.config_diff.join("\n") })]));
    // flip table of each task's first binary metric
    var flipRows = CMP.rows.filter(function (r) { return r.stats && r.stats.flips && (r.level === "task" || r.level === "subject" || r.level === "group"); });
    var seen = {};
    var ft = [];
    flipRows.forEach(function (r) {
      if (seen[r.level + r.name]) return; seen[r.level + r.name] = 1;
      var f = r.stats.flips;
      ft.push(el("tr", { "data-name": r.name }, [el("td", { text: r.name }), el("td", { text: r.metric }), numCell(f.right_to_wrong, String(f.right_to_wrong), "bad"), numCell(f.wrong_to_right, String(f.wrong_to_right), "good"), numCell(f.both_right, String(f.both_right)), numCell(f.both_wrong, String(f.both_wrong))]));
    });
    s.appendChild(el("h3", { text: "2\u00d72 flip tables" }));
    s.appendChild(table(["task", "metric", "right\u2192wrong", "wrong\u2192right", "both right", "both wrong"], ft, "flip-table"));
    // per-subject delta chart, sorted by size, with intervals
    var subj = CMP.rows.filter(function (r) { return r.level === "subject" && r.stats && r.stats.method === "mcnemar"; });
    var firstMetric = {};
    subj = subj.filter(function (r) { if (firstMetric[r.name]) return false; firstMetric[r.name] = 1; return true; });
    if (subj.length) {
      subj.sort(function (a, b) { return a.delta - b.delta; });
      var W = 760, L = 230, H = 18 * subj.length + 30;
      var lim = Math.max.apply(null, subj.map(function (r) { return Math.max(Math.abs(r.stats.low), Math.abs(r.stats.high)); }).concat([0.01]));
      var g = svg("svg", { width: W, height: H, id: "delta-chart", role: "img" });
      var mid = L + (W - L - 60) / 2;
      function x(v) { return mid + (W - L - 60) / 2 * v / lim; }
      g.appendChild(svg("line", { x1: mid, x2: mid, y1: 4, y2: H - 10, stroke: "#667085" }));
      subj.forEach(function (r, i) {
        var y = 10 + i * 18, col = r.stats.verdict === "worse" ? "#c0362c" : r.stats.verdict === "better" ? "#12805c" : "#667085";
        g.appendChild(svg("text", { x: L - 6, y: y + 11, "text-anchor": "end" }, r.name));
        g.appendChild(svg("line", { x1: x(r.stats.low), x2: x(r.stats.high), y1: y + 8, y2: y + 8, stroke: col, "stroke-width": 2 }));
        g.appendChild(svg("circle", { cx: x(r.delta), cy: y + 8, r: 4, fill: col }));
        g.appendChild(svg("text", { x: W - 4, y: y + 11, "text-anchor": "end" }, signed(r.delta, 100)));
      });
      s.appendChild(el("h3", { text: "per-subject \u0394 (points) with 95% intervals, sorted" }));
      s.appendChild(el("div", { cls: "chart" }, [g]));
    }
    // time beside accuracy
    var tr = CMP.timing.filter(function (t) { return isNum(t.model_s_a) || isNum(t.model_s_b); }).map(function (t) {
      var ratio = isNum(t.model_s_a) && isNum(t.model_s_b) && t.model_s_a > 0 ? t.model_s_b / t.model_s_a : null;
      return el("tr", null, [el("td", { text: t.task }), numCell(t.model_s_a, isNum(t.model_s_a) ? t.model_s_a.toFixed(2) : "-"), numCell(t.model_s_b, isNum(t.model_s_b) ? t.model_s_b.toFixed(2) : "-"), numCell(ratio, isNum(ratio) ? ratio.toFixed(2) + "\u00d7" : "-"), numCell(t.tokens_per_s_a, isNum(t.tokens_per_s_a) ? t.tokens_per_s_a.toFixed(0) : "-"), numCell(t.tokens_per_s_b, isNum(t.tokens_per_s_b) ? t.tokens_per_s_b.toFixed(0) : "-")]);
    });
    if (tr.length) { s.appendChild(el("h3", { text: "model time per task" })); s.appendChild(table(["task", "A s", "B s", "B/A", "A tokens/s", "B tokens/s"], tr)); }
    s.appendChild(el("h3", { text: "flipped questions (" + CMP.flipped.length + ", right\u2192wrong first): pick one below with the \u201cflipped\u201d filter" }));
  })();

  // ---------- sample browser ----------
  var sb = section("samples", "Samples");
  var fRun = el("select", { id: "f-run" }), fTask = el("select", { id: "f-task" }), fSubject = el("select", { id: "f-subject" });
  var fVerdict = el("select", { id: "f-verdict" }), fSearch = el("input", { id: "f-search", type: "search", placeholder: "search prompt, output, gold" });
  var fFlip = el("input", { id: "f-flipped", type: "checkbox" });
  function opt(sel, value, label) { sel.appendChild(el("option", { value: value, text: label })); }
  opt(fRun, "", "all runs"); DATA.runs.forEach(function (r, i) { opt(fRun, String(i), r.key + ": " + r.id); });
  opt(fTask, "", "all tasks");
  var groupsOf = {}, taskNames = [];
  DATA.runs.forEach(function (run) { run.tasks.forEach(function (t) { if (taskNames.indexOf(t.task) < 0) taskNames.push(t.task); if (t.group) (groupsOf[t.group] = groupsOf[t.group] || []).indexOf(t.task) < 0 && groupsOf[t.group].push(t.task); }); });
  Object.keys(groupsOf).sort().forEach(function (g) { opt(fTask, "group:" + g, g + " (group, " + groupsOf[g].length + " subjects)"); });
  taskNames.filter(function (t) { return !Object.keys(groupsOf).some(function (g) { return groupsOf[g].indexOf(t) >= 0; }); }).sort().forEach(function (t) { opt(fTask, t, t); });
  function fillSubjects() {
    fSubject.textContent = "";
    opt(fSubject, "", "all subjects");
    var v = fTask.value, subs = v.indexOf("group:") === 0 ? groupsOf[v.slice(6)] : v ? [] : [].concat.apply([], Object.keys(groupsOf).map(function (g) { return groupsOf[g]; }));
    subs.slice().sort().forEach(function (t) { opt(fSubject, t, t); });
  }
  fillSubjects();
  [["", "correct and incorrect"], ["correct", "correct"], ["incorrect", "incorrect"], ["error", "errors"]].forEach(function (p) { opt(fVerdict, p[0], p[1]); });
  var count = el("span", { cls: "count", id: "f-count" });
  sb.appendChild(el("div", { cls: "filters" }, [fRun, fTask, fSubject, fVerdict, el("label", null, [fFlip, " flipped" + (CMP ? "" : " (needs two runs)")]), fSearch, count]));
  var list = el("div", { cls: "list", id: "sample-list" }), spacer = el("div", { cls: "spacer" }), detail = el("div", { cls: "detail", id: "sample-detail" });
  list.appendChild(spacer);
  sb.appendChild(el("div", { cls: "browser" }, [list, detail]));
  if (!CMP) fFlip.disabled = true;

  function verdictOf(s) { return s.error ? "error" : s.correct === true ? "correct" : s.correct === false ? "incorrect" : (s.metrics && s.metrics.acc === 1 ? "correct" : "other"); }
  function hay(x) {
    if (x.h == null) {
      var s = x.s;
      x.h = [s.prompt, (s.prompts || []).join("\n"), s.output, s.program, String(s.gold), JSON.stringify(s.extracted || ""), s.error].join("\n").toLowerCase();
    }
    return x.h;
  }
  var VIEW = ALL, selected = null;
  function applyFilters() {
    var run = fRun.value, task = fTask.value, sub = fSubject.value, ver = fVerdict.value, q = fSearch.value.toLowerCase(), flip = fFlip.checked;
    var members = task.indexOf("group:") === 0 ? groupsOf[task.slice(6)] : null;
    VIEW = ALL.filter(function (x) {
      if (run && String(x.ri) !== run) return false;
      if (members ? members.indexOf(x.t.task) < 0 : task && x.t.task !== task) return false;
      if (sub && x.t.task !== sub) return false;
      if (ver && verdictOf(x.s) !== ver) return false;
      if (flip && !FLIPS[sampleKey(x)]) return false;
      if (q && hay(x).indexOf(q) < 0) return false;
      return true;
    });
    count.textContent = VIEW.length + " of " + ALL.length + " samples";
    spacer.style.height = VIEW.length * ROW_H + "px";
    list.scrollTop = 0;
    renderRows();
  }
  function rowText(x) {
    // the question itself: the start of the prompt after the shared few-shot context, else its end
    var s = x.s, text = s.prompt || (s.prompts || [""])[0] || "";
    var q = (s._prefixed ? text.slice(0, 140) : text.slice(-140)).replace(/\s+/g, " ");
    return (DATA.runs.length > 1 ? DATA.runs[x.ri].key + " " : "") + x.t.task + " #" + s.doc_id + "  " + q;
  }
  function badge(x) {
    var v = verdictOf(x.s);
    return el("span", { cls: "badge " + (v === "correct" ? "ok" : v === "incorrect" || v === "error" ? "no" : ""), text: v === "correct" ? "\u2713" : v === "incorrect" ? "\u2717" : v === "error" ? "!" : "\u00b7" });
  }
  function renderRows() {
    var first = Math.max(0, Math.floor(list.scrollTop / ROW_H) - 5), last = Math.min(VIEW.length, first + Math.ceil(list.clientHeight / ROW_H) + 10);
    spacer.textContent = "";
    for (var i = first; i < last; i++) (function (x, i) {
      var r = el("div", { cls: "row" + (x === selected ? " sel" : ""), "data-index": String(i), onclick: function () { select(x, true); } }, [badge(x), FLIPS[sampleKey(x)] ? el("span", { cls: "badge flip", text: "flip" }) : null, " ", rowText(x)]);
      r.style.top = i * ROW_H + "px";
      spacer.appendChild(r);
    })(VIEW[i], i);
  }
  list.addEventListener("scroll", function () { window.requestAnimationFrame(renderRows); });
  [fRun, fTask, fSubject, fVerdict, fFlip].forEach(function (f) { f.addEventListener("change", function () { if (f === fTask) fillSubjects(); applyFilters(); }); });
  var searchTimer = null;
  fSearch.addEventListener("input", function () { clearTimeout(searchTimer); searchTimer = setTimeout(applyFilters, 120); });

  function kv(label, value) { return el("div", null, [el("b", { text: label + ": " }), el("span", { text: value == null ? "-" : typeof value === "string" ? value : JSON.stringify(value) })]); }
  function sampleView(x) {
    var s = x.s, t = x.t, box = el("div", { cls: "sample", "data-doc": String(s.doc_id) });
    box.appendChild(el("h3", { text: DATA.runs[x.ri].key + " | " + t.model + " | " + t.task + " | doc " + s.doc_id }));
    box.appendChild(el("div", null, [badge(x), " ", verdictOf(s)]));
    if (s.error) box.appendChild(el("div", { cls: "err", text: "error: " + s.error }));
    if (s._prefixed && t.prefix) box.appendChild(el("details", null, [el("summary", { text: "shared context (" + t.prefix.length + " chars: header and few-shot examples)" }), el("pre", { text: t.prefix })]));
    if (typeof s.prompt === "string") box.appendChild(el("pre", { cls: "prompt", text: s.prompt }));
    if (s.prompts) s.prompts.forEach(function (p, i) { box.appendChild(el("div", { cls: "muted", text: "context " + i })); box.appendChild(el("pre", { text: p })); });
    if (s.logprobs) {
      var best = Math.max.apply(null, s.logprobs);
      var rows = s.logprobs.map(function (lp, i) {
        var others = s.logprobs.filter(function (_, j) { return j !== i; });
        var margin = others.length ? lp - Math.max.apply(null, others) : 0;
        return el("tr", { cls: i === s.gold ? "good" : "" }, [el("td", { text: String(i) + (i === s.gold ? " (gold)" : "") + (i === s.pred ? " (pred)" : "") }), el("td", { text: (s.continuations || [])[i] != null ? JSON.stringify(s.continuations[i]) : "" }), numCell(lp, lp.toFixed(4)), numCell(margin, (margin >= 0 ? "+" : "") + margin.toFixed(4)), el("td", { text: lp === best ? "argmax" : "" })]);
      });
      box.appendChild(table(["choice", "continuation", "log-likelihood", "margin", ""], rows));
    }
    if (s.output != null) { box.appendChild(el("div", { cls: "muted", text: "raw generation" + (s.finish_reason ? " (finish: " + s.finish_reason + ")" : "") })); box.appendChild(el("pre", { cls: "output", text: s.output })); }
    if (s.extracted != null) box.appendChild(kv("extracted", s.extracted));
    box.appendChild(kv("gold", s.gold));
    box.appendChild(kv("pred", s.pred));
    if (s.metrics) box.appendChild(kv("metrics", s.metrics));
    if (s.truncated) box.appendChild(kv("context tokens dropped on the left", s.truncated));
    if (s.program != null) { box.appendChild(el("div", { cls: "muted", text: "program" })); box.appendChild(el("pre", { cls: "program", text: s.program })); }
    (s.executions || []).forEach(function (e, i) {
      box.appendChild(kv("execution " + i, e.status + (e.detail ? " (" + e.detail + ")" : "") + (isNum(e.duration_s) ? ", " + e.duration_s + " s" : "")));
      if (e.stdout) box.appendChild(el("pre", { text: e.stdout }));
      if (e.stderr) box.appendChild(el("pre", { text: e.stderr }));
    });
    if (s.executions && t.isolation) box.appendChild(el("details", null, [el("summary", { text: "sandbox" }), el("pre", { text: JSON.stringify(t.isolation, null, 2) })]));
    var known = ["doc_id", "gold", "pred", "correct", "logprobs", "is_greedy", "metrics", "truncated", "prompt", "prompts", "continuations", "output", "extracted", "program", "executions", "error", "finish_reason", "_prefixed"];
    var extra = {};
    Object.keys(s).forEach(function (k) { if (known.indexOf(k) < 0) extra[k] = s[k]; });
    if (Object.keys(extra).length) box.appendChild(el("details", null, [el("summary", { text: "other fields" }), el("pre", { text: JSON.stringify(extra, null, 2) })]));
    return box;
  }
  function counterpart(x) {
    // the same doc of the same task in the other run (comparison: side by side)
    if (!CMP || DATA.runs.length < 2) return null;
    var other = x.ri === 0 ? 1 : 0;
    for (var i = 0; i < ALL.length; i++) { var y = ALL[i]; if (y.ri === other && y.t.task === x.t.task && y.s.doc_id === x.s.doc_id) return y; }
    return null;
  }
  function linkOf(x) { return "#sample=" + encodeURIComponent(DATA.runs[x.ri].key) + "/" + encodeURIComponent(x.t.model) + "/" + encodeURIComponent(x.t.task) + "/" + x.s.doc_id; }
  function select(x, updateHash) {
    selected = x;
    detail.textContent = "";
    var f = FLIPS[sampleKey(x)];
    detail.appendChild(el("div", { cls: "muted" }, [el("a", { href: linkOf(x), id: "sample-link", text: "link to this sample" }), f ? " | flipped " + f.direction.replace(/_/g, " ") + " (" + f.metric + ")" : ""]));
    var cols = el("div", { cls: "cols" }, [sampleView(x)]);
    var y = counterpart(x);
    if (y) { var pair = x.ri === 0 ? [x, y] : [y, x]; cols.textContent = ""; cols.appendChild(sampleView(pair[0])); cols.appendChild(sampleView(pair[1])); }
    detail.appendChild(cols);
    if (updateHash) history.replaceState(null, "", linkOf(x));
    renderRows();
  }
  function fromHash() {
    var m = /^#sample=([^/]+)\/([^/]+)\/([^/]+)\/(\d+)$/.exec(location.hash);
    if (!m) return false;
    var key = decodeURIComponent(m[1]), model = decodeURIComponent(m[2]), task = decodeURIComponent(m[3]), doc = Number(m[4]);
    var ri = DATA.runs.findIndex(function (r) { return r.key === key; });
    for (var i = 0; i < ALL.length; i++) {
      var x = ALL[i];
      if (x.ri === ri && x.t.model === model && x.t.task === task && x.s.doc_id === doc) {
        var vi = VIEW.indexOf(x);
        if (vi < 0) { fRun.value = ""; fTask.value = ""; fillSubjects(); fVerdict.value = ""; fFlip.checked = false; fSearch.value = ""; applyFilters(); vi = VIEW.indexOf(x); }
        list.scrollTop = Math.max(0, vi * ROW_H - 2 * ROW_H);
        select(x, false);
        sb.scrollIntoView();
        return true;
      }
    }
    detail.textContent = "";
    detail.appendChild(el("div", { cls: "err", text: "no sample " + location.hash }));
    return false;
  }
  window.addEventListener("hashchange", fromHash);
  applyFilters();
  fromHash();
  document.body.setAttribute("data-ready", "1");
})();
