/* Live dashboard glue: connection indicator with a staleness watchdog, 2 s polling fallback
   while the socket is down, and a fresh snapshot on every (re)connect. The socket itself is
   htmx's ws extension, which reconnects with exponential backoff and full jitter (capped at
   5 s here); after a 4013 close (Redis down) this script asks it to. */
(function () {
  "use strict";
  var POLL_MS = 2000;
  var live = document.getElementById("live");
  var status = document.getElementById("connection-status");
  if (!live || !status) return;
  var pollBase = live.getAttribute("data-poll-url");
  var scopeSelect = document.getElementById("live-scope");
  var pollTimer = null;
  var socket = null; // htmx ws extension's socket wrapper, while open
  var announcer = document.getElementById("connection-announce");

  // The scope ("", "bot:<slug>" or "campaign:<slug>") picks which fragments the page shows.
  function scope() {
    return live.getAttribute("data-scope") || "";
  }

  function pollUrl() {
    return pollBase + (scope() ? "?scope=" + encodeURIComponent(scope()) : "");
  }

  // Tell the socket which scope to push; the server answers with #live-notice, then we resync.
  function subscribe() {
    var kind = scope().split(":")[0];
    var slug = scope().slice(kind.length + 1);
    var message = kind ? { action: "subscribe" } : { action: "unsubscribe" };
    if (kind) message[kind] = slug;
    socket.send(JSON.stringify(message), scopeSelect || live);
  }

  // The indicator. `connection` is what the socket and the polling say (connecting, live,
  // polling, reconnecting, ended); the watchdog below turns live or polling into "stale" when
  // the figures stop coming. The visible text may change every second (the age); screen readers
  // hear only a change of state, through the separate polite live region.
  var connection = "connecting";
  var labels = {
    connecting: "Connecting…", live: "Live", polling: "Polling", reconnecting: "Reconnecting…",
  };
  var shown = "connecting";

  function show(state, text) {
    connection = state;
    if (text) labels[state] = text;
    watch();
  }

  function display(state, text, spoken) {
    if (status.textContent !== text) status.textContent = text;
    if (state === shown) return;
    shown = state;
    status.className = "conn conn-" + state;
    if (announcer) announcer.textContent = spoken || text;
  }

  // Staleness watchdog. pulse sends every watched group a frame at least every 5 s (only a
  // heartbeat, #live-heartbeat, when nothing changed), and every snapshot carries the server
  // time its data was read (data-as-of, µs on Redis's clock). Stale: the socket is open but
  // nothing came for SILENT_MS, or the newest data on the page is older than OLD_MS (the same
  // for the polling fallback, whose polls may be failing). Back to Live as soon as data flows.
  var SILENT_MS = 10000;
  var OLD_MS = 15000;
  var now = function () { return performance.now(); }; // monotonic: immune to clock changes
  var heardAt = now(); // the last message on the socket or successful poll
  var newestAsOf = 0; // µs on the server's clock
  var offset = Infinity; // our clock minus the server's (ms), least seen: transit excluded
  var plainAt = -Infinity; // the last data without a stamp (live state down: figures from PG)

  function heard(html) {
    var t = now();
    heardAt = t;
    var stamps = /data-as-of="(\d+)"/g;
    var match;
    var stamped = false;
    while ((match = stamps.exec(html || ""))) {
      var micros = Number(match[1]);
      if (!micros) continue;
      stamped = true;
      offset = Math.min(offset, t - micros / 1000);
      newestAsOf = Math.max(newestAsOf, micros);
    }
    return stamped;
  }

  function dataAge() {
    var at = newestAsOf ? newestAsOf / 1000 + offset : -Infinity;
    return now() - Math.max(at, plainAt);
  }

  function ago(ms) {
    var seconds = Math.max(0, Math.round(ms / 1000));
    return seconds < 120 ? seconds + " s" : Math.round(seconds / 60) + " min";
  }

  function watch() {
    if (connection !== "live" && connection !== "polling") {
      display(connection, labels[connection] || connection);
      return;
    }
    var age = dataAge();
    var silent = connection === "live" && now() - heardAt > SILENT_MS;
    if (silent || age > OLD_MS) {
      var seconds = Math.max(0, Math.round(age / 1000));
      display("stale", "Stale · updated " + ago(age) + " ago",
        "Stale: figures last updated " + seconds + " seconds ago");
    } else {
      display(connection, labels[connection]);
    }
  }

  // The page's own snapshot counts as the first data.
  var initial = Array.prototype.map.call(document.querySelectorAll("#live [data-as-of]"),
    function (el) { return 'data-as-of="' + el.getAttribute("data-as-of") + '"'; }).join(" ");
  if (!heard(initial)) plainAt = now();
  setInterval(watch, 1000);

  // Every live fragment of the snapshot is out-of-band, so each one passes the check below.
  function refresh() {
    if (window.htmx) {
      htmx.ajax("GET", pollUrl(), { target: "#live-metrics", swap: "none" });
    }
  }

  // A snapshot over HTTP and a frame over the socket can cross on the wire: each fragment root
  // carries the time its data was read (data-as-of, one clock for every server process), and a
  // fragment older than the one on the page is not swapped in.
  function asOf(el) {
    return el && el.getAttribute ? Number(el.getAttribute("data-as-of") || 0) : 0;
  }
  document.body.addEventListener("htmx:oobBeforeSwap", function (event) {
    var incoming = event.detail.fragment && event.detail.fragment.firstElementChild;
    var current = event.detail.target;
    if (asOf(incoming) && asOf(current) > asOf(incoming)) event.detail.shouldSwap = false;
  });

  // While the socket is down: "Reconnecting…" until a poll gets through, then "Polling".
  document.body.addEventListener("htmx:afterRequest", function (event) {
    var path = event.detail.pathInfo && event.detail.pathInfo.requestPath;
    if (!event.detail.successful || !path || path.indexOf(pollBase) !== 0) return;
    var xhr = event.detail.xhr;
    if (!heard(xhr && xhr.responseText)) plainAt = now();
    if (!socket && pollTimer) show("polling");
    else watch();
  });
  document.body.addEventListener("htmx:wsBeforeMessage", function (event) {
    heard(event.detail && event.detail.message);
    watch();
  });

  function startPolling() {
    if (pollTimer || ended) return;
    refresh();
    pollTimer = setInterval(refresh, POLL_MS);
  }

  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  }

  // Charts: every element with data-figure="<id of a JSON script>" is drawn from that figure
  // and redrawn in place (Plotly.react on the same node) when the JSON or the theme changes, so
  // a new chart needs only markup. Colours written as "var(--name)" are read from the CSS.
  var drawnWith = new WeakMap(); // chart node -> the JSON text and theme it shows
  var drawPending = false;

  function themed(value, style) {
    if (typeof value === "string") {
      var match = /^var\((--[\w-]+)\)$/.exec(value);
      return match ? style.getPropertyValue(match[1]).trim() : value;
    }
    if (Array.isArray(value)) return value.map(function (v) { return themed(v, style); });
    if (value && typeof value === "object") {
      var copy = {};
      Object.keys(value).forEach(function (key) { copy[key] = themed(value[key], style); });
      return copy;
    }
    return value;
  }

  function drawCharts() {
    drawPending = false;
    if (!window.Plotly) return;
    var style = getComputedStyle(document.body);
    var theme = style.color + "|" + style.getPropertyValue("--border");
    var border = style.getPropertyValue("--border").trim();
    document.querySelectorAll("[data-figure]").forEach(function (holder) {
      var source = document.getElementById(holder.getAttribute("data-figure"));
      if (!source) return;
      var text = source.textContent;
      var last = drawnWith.get(holder);
      if (last && last.text === text && last.theme === theme) return;
      drawnWith.set(holder, { text: text, theme: theme });
      var figure = themed(JSON.parse(text), style);
      var layout = figure.layout || {};
      layout.font = Object.assign({ color: style.color, family: style.fontFamily }, layout.font);
      ["xaxis", "yaxis", "yaxis2"].forEach(function (name) {
        if (!layout[name]) return;
        layout[name].gridcolor = layout[name].zerolinecolor = layout[name].linecolor = border;
      });
      (layout.annotations || []).forEach(function (note) {
        note.font = Object.assign({ color: style.color }, note.font);
      });
      Plotly.react(holder, figure.data, layout, { displayModeBar: false, responsive: true });
    });
  }

  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    window.requestAnimationFrame(drawCharts);
  }

  // A "Show the data" table stays open when the fragment holding it is swapped.
  var openDetails = {};
  document.addEventListener("toggle", function (event) {
    var el = event.target;
    if (el.tagName === "DETAILS" && el.id) openDetails[el.id] = el.open;
  }, true);
  function keepDetailsOpen() {
    Object.keys(openDetails).forEach(function (id) {
      var el = document.getElementById(id);
      if (openDetails[id] && el && !el.open) el.open = true;
    });
  }

  ["htmx:afterSwap", "htmx:oobAfterSwap"].forEach(function (name) {
    document.body.addEventListener(name, function () {
      keepDetailsOpen();
      scheduleDraw();
    });
  });
  document.body.addEventListener("htmx:afterSettle", scheduleDraw);
  document.addEventListener("botflow:theme", scheduleDraw);
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", scheduleDraw);
  drawCharts();

  // Reconnect delays: full jitter over 0.5 s, 1 s, 2 s ... capped at 5 s, so the dashboards of a
  // restarted server or Redis spread their reconnects and are all back within seconds.
  function reconnectDelay(retry) {
    return Math.random() * Math.min(5000, 500 * Math.pow(2, retry));
  }
  if (window.htmx) window.htmx.config.wsReconnectDelay = reconnectDelay;
  var retries = 0; // reconnects after 4013 since the socket was last open
  document.body.addEventListener("htmx:wsOpen", function (event) {
    socket = event.detail.socketWrapper;
    retries = 0;
    stopPolling();
    heardAt = now(); // SILENT_MS counts from the opening; the snapshot below follows at once
    show("live");
    // Resynchronise from a fresh snapshot after any gap (after the scope is re-subscribed).
    if (scope()) subscribe();
    else refresh();
  });
  // The server ended this page's access (4401: signed out, session or user gone; 4403: no
  // longer a member of this organization). Retrying cannot help: stop, say why, offer sign-in.
  var ended = false;
  var endedBox = document.getElementById("access-ended");
  function accessEnded(code) {
    if (ended) return;
    ended = true;
    socket = null;
    stopPolling();
    var text = endedBox && endedBox.getAttribute("data-message-" + code);
    show("ended", code === 4403 ? "No access" : "Signed out");
    if (endedBox && text) {
      document.getElementById("access-ended-message").textContent = text;
      endedBox.hidden = false;
    }
    live.removeAttribute("ws-connect");
  }

  document.body.addEventListener("htmx:wsClose", function (event) {
    var code = event.detail && event.detail.event && event.detail.event.code;
    if (code === 4401 || code === 4403) {
      accessEnded(code);
      return;
    }
    if (ended) return;
    socket = null;
    show("reconnecting");
    startPolling();
    // 4013: live updates are down (Redis) — try again later. htmx retries only 1006 and
    // 1011-1013 itself, and a server cannot send 1013, so this page retries, with full jitter.
    var wrapper = event.detail && event.detail.socketWrapper;
    if (code === 4013 && wrapper) {
      setTimeout(function () {
        if (!ended && !socket) wrapper.reconnect();
      }, reconnectDelay(retries++));
    }
  });
  document.body.addEventListener("htmx:oobAfterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "live-notice") refresh();
  });
  if (scopeSelect) {
    scopeSelect.addEventListener("change", function () {
      live.setAttribute("data-scope", scopeSelect.value);
      var url = new URL(window.location.href);
      url.searchParams.delete("bot");
      url.searchParams.delete("campaign");
      if (scopeSelect.value) url.searchParams.set("scope", scopeSelect.value);
      else url.searchParams.delete("scope");
      history.replaceState(null, "", url);
      if (socket) subscribe();
      else refresh();
    });
  }
  document.body.addEventListener("htmx:wsError", function () {
    startPolling();
  });
  // No socket within 5 s (blocked proxy, server without WebSockets): poll meanwhile.
  setTimeout(function () {
    if (connection === "connecting") startPolling();
  }, 5000);
})();
