"use strict";
(function () {
  // Everything shown here comes from untrusted model output, inputs and documents:
  // nodes are built with textContent only, never from HTML strings.
  document.documentElement.classList.add("js");
  var PAGE = 50;
  var meta = JSON.parse(document.getElementById("meta").textContent);
  var chunkEls = document.querySelectorAll("script.chunk");
  var chunkCache = {};
  var index = [];
  var shown = [];
  var page = 0;
  var itemsById = new Map();  // case id → its list item on the current page (ids are data, not element ids)
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, cls) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function inflate(b64) {
    var bin = atob(b64.trim());
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(JSON.parse);
  }

  // Columns back to records (the reverse of _columns in evalgate/reporters/html.py).
  function rows(cols, n) {
    var out = [];
    for (var i = 0; i < n; i++) out.push({});
    Object.keys(cols).forEach(function (k) {
      var col = cols[k];
      if (Array.isArray(col)) {
        for (var i = 0; i < n; i++) if (col[i] !== null && col[i] !== undefined) out[i][k] = col[i];
      } else if (col.$ === "L") {
        var items = rows(col.c, col["#"].reduce(function (a, b) { return a + b; }, 0)), at = 0;
        for (var j = 0; j < n; j++) { if (col["#"][j]) out[j][k] = items.slice(at, at + col["#"][j]); at += col["#"][j]; }
      } else if (col.$ === "D") {
        var recs = rows(col.c, col["?"].reduce(function (a, b) { return a + b; }, 0)), pos = 0;
        for (var m = 0; m < n; m++) if (col["?"][m]) out[m][k] = recs[pos++];
      }
    });
    return out;
  }

  function chunk(k) {
    if (!chunkCache[k]) {
      chunkCache[k] = inflate(chunkEls[k].textContent).then(function (data) {
        var turns = rows(data.turns, data.nturns), at = 0;
        var cases = rows(data.cases, data.ncases);
        cases.forEach(function (c) {
          if (c.session === "=") c.session = c.id;
          (c.reps || []).forEach(function (rep) {
            rep.turns = turns.slice(at, at + rep.nt);
            rep.turns.forEach(function (t, i) { if (t.n === undefined) t.n = i + 1; });
            at += rep.nt;
          });
        });
        return cases;
      });
    }
    return chunkCache[k];
  }

  function fmtMs(v) { return v === null || v === undefined ? "—" : (Math.round(v * 10) / 10).toLocaleString() + " ms"; }
  function js(v) { return typeof v === "string" ? v : JSON.stringify(v); }

  var STATUS = { pass: "✓ passed", fail: "✗ failed", flaky: "~ flaky", error: "! errored" };

  function matches(c, f) {
    if (f.st) {
      if (f.st === "notpass" && c.st === "pass") return false;
      if (f.st === "reg" && !c.reg) return false;
      if (f.st === "chg" && !c.chg) return false;
      if (f.st === "crit" && !c.crit) return false;
      if (f.st === "error" && !(c.st === "error" || c.erred)) return false;
      if ((f.st === "fail" || f.st === "flaky" || f.st === "pass") && c.st !== f.st) return false;
    }
    if (f.route && c.routes.indexOf(f.route) < 0) return false;
    if (f.tag && c.tags.indexOf(f.tag) < 0) return false;
    if (f.sc && c.fsc.indexOf(f.sc) < 0) return false;
    if (f.q) {
      var hay = (c.id + " " + c.tags.join(" ") + " " + c.q).toLowerCase();
      if (hay.indexOf(f.q) < 0) return false;
    }
    return true;
  }

  function filters() {
    return { q: $("f-q").value.trim().toLowerCase(), st: $("f-st").value, route: $("f-route").value,
             tag: $("f-tag").value, sc: $("f-sc").value };
  }

  function apply(keepPage) {
    var f = filters();
    shown = index.filter(function (c) { return matches(c, f); });
    if (!keepPage) page = 0;
    render();
  }

  function render() {
    var list = $("cases-list");
    list.textContent = "";
    itemsById = new Map();
    var pages = Math.max(1, Math.ceil(shown.length / PAGE));
    if (page >= pages) page = pages - 1;
    var start = page * PAGE;
    shown.slice(start, start + PAGE).forEach(function (c) { list.appendChild(caseItem(c)); });
    $("count").textContent = shown.length === index.length
      ? index.length.toLocaleString() + " case(s)"
      : shown.length.toLocaleString() + " of " + index.length.toLocaleString() + " case(s) match";
    $("page").textContent = "page " + (page + 1) + " of " + pages;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
  }

  function caseItem(c) {
    var li = el("li");
    itemsById.set(c.id, li);
    var details = el("details");
    var summary = el("summary", null,
      el("span", "badge badge-" + c.st, STATUS[c.st] || c.st),
      el("span", "id", c.id));
    if (c.crit) summary.appendChild(el("span", "chip crit", "critical"));
    if (c.reg) summary.appendChild(el("span", "chip reg", "regressed"));
    if (c.fix) summary.appendChild(el("span", "chip", "fixed"));
    if (c.chg) summary.appendChild(el("span", "chip", "changed: " + c.chg.join(", ")));
    if (c.n > 1) summary.appendChild(el("span", "chip", c.n + " repeats"));
    if (c.routes.length) summary.appendChild(el("span", "muted", "route " + c.routes.join(" → ")));
    if (c.fsc.length) summary.appendChild(el("span", "muted", "failing: " + c.fsc.join(", ")));
    c.tags.forEach(function (t) { summary.appendChild(el("span", "chip", t)); });
    details.appendChild(summary);
    details.addEventListener("toggle", function () {
      if (details.open && !details.dataset.loaded) {
        details.dataset.loaded = "1";
        var holder = el("div", "story", "Loading…");
        details.appendChild(holder);
        chunk(c.k).then(function (stories) {
          var s = stories.find(function (x) { return x.id === c.id; });
          holder.textContent = "";
          holder.appendChild(story(s));
        });
      }
    });
    li.appendChild(details);
    return li;
  }

  function traceLink(tid) {
    if (!meta.trace_url) return el("code", null, tid);
    var a = el("a", null, tid);
    // encoded, dots too: an id like ".." must not climb the viewer's path
    a.href = meta.trace_url.split("{trace_id}").join(encodeURIComponent(tid).replace(/\./g, "%2E"));
    a.rel = "noopener noreferrer";
    return a;
  }

  function story(s) {
    var box = el("div");
    var link = el("a", null, "link to this case");
    link.href = "#case=" + encodeURIComponent(s.id);
    box.appendChild(el("p", "muted", "user " + (s.user || "—") + " in [" + s.groups.join(", ") + "] · defined at " + s.src + " · ", link));
    if (s.session) box.appendChild(el("p", "muted", "replays recorded session " + s.session));
    s.groups = s.groups || [];
    s.reps.forEach(function (rep) {
      if (s.reps.length > 1) box.appendChild(el("h4", null, "Repeat " + rep.r + ": " + (STATUS[rep.st] || rep.st)));
      if (rep.err) box.appendChild(el("p", "notice", "error: " + rep.err));
      (rep.turns || []).forEach(function (t) { box.appendChild(turn(t)); });
    });
    return box;
  }

  function row(dl, label, value) {
    if (value === null || value === undefined) return;
    dl.appendChild(el("dt", null, label));
    dl.appendChild(el("dd", null, value));
  }

  // The messages the model received, collapsed: a count by role, then each message's role and text.
  function prompt(messages) {
    var roles = new Map();  // role names are data: never object keys
    messages.forEach(function (m) { var r = String(m.role); roles.set(r, (roles.get(r) || 0) + 1); });
    var list = el("ol", "prompt");
    messages.forEach(function (m) {
      list.appendChild(el("li", null, el("span", "muted", String(m.role) + (m.calls ? " (asks for " + m.calls + ")" : "")),
        el("pre", null, m.content === undefined ? "" : m.content)));
    });
    var words = Array.from(roles, function (kv) { return kv[1] + " " + kv[0]; }).join(", ");
    return el("details", null, el("summary", null, messages.length + " message(s): " + words), list);
  }

  function turn(t) {
    var div = el("div", "turn " + (t.ok ? "ok" : "bad"));
    div.appendChild(el("h4", null, "Turn " + t.n + (t.ok ? " ✓" : " ✗")));
    var dl = el("dl");
    row(dl, "input", el("pre", null, t.in === undefined ? "" : t.in));
    if (t.route) {
      var r = t.route.name + (t.route.confidence !== undefined && t.route.confidence !== null ? " (confidence " + t.route.confidence + ")" : "");
      row(dl, "route", r + (t.route.reason ? " — because " + t.route.reason : ""));
    }
    if (t.ctx && t.ctx.length) {
      var used = t.ctx.filter(function (c) { return c.used !== false; });
      var left = t.ctx.filter(function (c) { return c.used === false; });
      var table = el("table", null, el("thead", null, el("tr", null, el("th", null, "document"), el("th", null, "rank"),
        el("th", null, "score"), el("th", null, "tokens"), el("th", null, "used?"))));
      var body = el("tbody");
      used.concat(left).forEach(function (c) {
        body.appendChild(el("tr", null, el("td", null, c.id + (c.title ? " · " + c.title : "")), el("td", "num", c.rank === undefined ? "" : c.rank),
          el("td", "num", c.score === undefined ? "" : c.score), el("td", "num", c.tokens === undefined ? "" : c.tokens),
          el("td", null, c.used === false ? "left out: " + (c.excluded || "not used") : "used")));
      });
      table.appendChild(body);
      row(dl, "context", el("div", null, used.length + " used, " + left.length + " left out", table));
    }
    (t.tools || []).forEach(function (call) {
      var text = call.name + "(" + js(call.arguments || {}) + ")";
      if (call.error) text += " → error: " + call.error;
      else if (call.result !== undefined && call.result !== null) text += " → " + js(call.result);
      row(dl, "tool call", el("code", null, text));
    });
    if (t.model) row(dl, "model", [t.model.provider, t.model.name].filter(Boolean).join(" / ") + (t.model.params ? " " + js(t.model.params) : ""));
    if (t.prompt && t.prompt.length) row(dl, "prompt", prompt(t.prompt));
    if (t.err) row(dl, "error", el("span", "notice", t.err));
    if (t.out !== undefined) row(dl, "output", el("pre", null, t.out));
    if (t.state !== undefined) row(dl, "state after", el("code", null, js(t.state)));
    var lat = el("div", null, "measured by evalgate: " + fmtMs(t.ms));
    if (t.lat) {
      var total = t.lat.total || Object.keys(t.lat).reduce(function (a, k) { return a + (t.lat[k] || 0); }, 0) || 1;
      Object.keys(t.lat).forEach(function (k) {
        var bar = el("span", "bar");
        bar.style.width = Math.max(2, Math.round(160 * (t.lat[k] || 0) / total)) + "px";
        lat.appendChild(el("div", null, bar, k + " " + fmtMs(t.lat[k])));
      });
    } else {
      lat.appendChild(el("div", "muted", "the system reported no latency"));
    }
    row(dl, "latency", lat);
    if (t.usage) {
      var u = t.usage;
      row(dl, "usage", [u.input_tokens !== undefined ? u.input_tokens + " tokens in" : null,
        u.output_tokens !== undefined ? u.output_tokens + " tokens out" : null,
        u.cost_usd !== undefined ? "$" + u.cost_usd.toFixed(5) : null].filter(Boolean).join(" · "));
    }
    if (t.tid) row(dl, "trace", traceLink(t.tid));
    if (t.chg) {
      var changes = el("ul");
      Object.keys(t.chg).forEach(function (k) { changes.appendChild(el("li", null, k + ": " + js(t.chg[k]))); });
      row(dl, "changed vs recording", changes);
    }
    if (t.up && t.up.length) {
      var calls = el("ul");
      t.up.forEach(function (c) {
        calls.appendChild(el("li", c.s === "recorded" ? "muted" : (c.s === "live" ? null : "notice"),
          String(c.u) + " " + String(c.call) + ": " + String(c.s) + (c.note ? " — " + c.note : "")));
      });
      row(dl, "upstream calls", calls);
    }
    if (t.spans && t.spans.length) {
      var spans = el("ul");
      t.spans.forEach(function (s) {
        spans.appendChild(el("li", s.err ? "notice" : "muted",
          "\u00a0\u00a0".repeat(Number(s.d) || 0) + String(s.name) + " [" + String(s.kind) + "] " + String(s.ms) + " ms" +
          (s.err ? " — " + String(s.err) : "")));
      });
      row(dl, "the system's own spans", spans);
    }
    if (t.fb) row(dl, "recorded feedback", el("code", null, js(t.fb)));
    var scores = el("ul");
    (t.sc || []).forEach(function (s) {
      var v = s.v === undefined ? "" : " (" + Math.round(s.v * 1000) / 1000 + ")";
      scores.appendChild(el("li", s.ok ? "score-ok" : "score-bad", s.s + v + ": " + (s.err || s.x || (s.ok ? "passed" : "failed"))));
    });
    row(dl, "scores", (t.sc || []).length ? scores : "no scorer on this turn");
    div.appendChild(dl);
    return div;
  }

  function fill(id, values) {
    var select = $(id);
    values.sort().forEach(function (v) { var o = el("option", null, v); o.value = v; select.appendChild(o); });
  }

  function openFromHash() {
    var m = /^#case=(.*)$/.exec(location.hash);
    if (!m) return;
    var id;
    try { id = decodeURIComponent(m[1]); } catch (e) { return; }
    var pos = shown.findIndex(function (c) { return c.id === id; });
    if (pos < 0) {
      ["f-q", "f-st", "f-route", "f-tag", "f-sc"].forEach(function (f) { $(f).value = ""; });
      shown = index.slice();
      pos = shown.findIndex(function (c) { return c.id === id; });
      if (pos < 0) return;
    }
    page = Math.floor(pos / PAGE);
    render();
    var li = itemsById.get(id);
    if (!li) return;
    li.classList.add("target");
    var details = li.querySelector("details");
    details.open = true;
    li.scrollIntoView({ block: "start" });
    li.querySelector("summary").focus();
  }

  inflate(document.getElementById("index").textContent).then(function (data) {
    index = rows(data.c, data.n);
    index.forEach(function (c) { c.tags = c.tags || []; c.routes = c.routes || []; c.sc = c.sc || []; c.fsc = c.fsc || []; });
    var routes = {}, tags = {}, scorers = {};
    index.forEach(function (c) {
      c.routes.forEach(function (r) { routes[r] = 1; });
      c.tags.forEach(function (t) { tags[t] = 1; });
      c.sc.forEach(function (s) { scorers[s] = 1; });
    });
    fill("f-route", Object.keys(routes));
    fill("f-tag", Object.keys(tags));
    fill("f-sc", Object.keys(scorers));
    document.querySelector(".cases-ui").hidden = false;
    ["f-st", "f-route", "f-tag", "f-sc"].forEach(function (f) { $(f).addEventListener("change", function () { apply(false); }); });
    $("f-q").addEventListener("input", function () { apply(false); });
    document.querySelector(".filters").addEventListener("submit", function (e) { e.preventDefault(); });
    $("prev").addEventListener("click", function () { page--; render(); });
    $("next").addEventListener("click", function () { page++; render(); });
    window.addEventListener("hashchange", openFromHash);
    var notPassing = index.some(function (c) { return c.st !== "pass"; });
    if (notPassing && !/^#case=/.test(location.hash)) $("f-st").value = "notpass";
    apply(false);
    openFromHash();
    document.body.dataset.ready = "1";
  });
})();
