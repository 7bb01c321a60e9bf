/* Live dashboard glue: connection indicator, 2 s polling fallback while the socket is down,
   and a fresh snapshot on every (re)connect. The socket itself is htmx's ws extension, which
   reconnects with exponential backoff and full jitter. */
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

  function show(state, text) {
    status.className = "conn conn-" + state;
    status.textContent = text;
  }

  function refresh() {
    if (window.htmx) {
      htmx.ajax("GET", pollUrl(), { target: "#live-metrics", swap: "outerHTML" });
    }
  }

  // While the socket is down: "Reconnecting…" until a poll gets through, then "Polling".
  document.body.addEventListener("htmx:afterRequest", function (event) {
    var path = event.detail.pathInfo && event.detail.pathInfo.requestPath;
    if (!socket && pollTimer && event.detail.successful && path && path.indexOf(pollBase) === 0) {
      show("polling", "Polling");
    }
  });

  function startPolling() {
    if (pollTimer) return;
    refresh();
    pollTimer = setInterval(refresh, POLL_MS);
  }

  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  }

  // Charts are drawn from the JSON the server renders next to them and updated in place.
  function drawCharts() {
    var holder = document.getElementById("chart-activity");
    var source = document.getElementById("chart-activity-figure");
    if (!holder || !source || !window.Plotly) return;
    var figure = JSON.parse(source.textContent);
    var style = getComputedStyle(document.body);
    figure.layout.font = { color: style.color, family: style.fontFamily };
    figure.layout.xaxis.gridcolor = figure.layout.yaxis.gridcolor = style.getPropertyValue("--border");
    Plotly.react(holder, figure.data, figure.layout, { displayModeBar: false, responsive: true });
  }
  document.body.addEventListener("htmx:oobAfterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "chart-activity-data") drawCharts();
  });
  document.body.addEventListener("htmx:afterSettle", drawCharts);
  document.addEventListener("botflow:theme", drawCharts);
  drawCharts();

  document.body.addEventListener("htmx:wsOpen", function (event) {
    socket = event.detail.socketWrapper;
    stopPolling();
    show("live", "Live");
    // Resynchronise from a fresh snapshot after any gap (after the scope is re-subscribed).
    if (scope()) subscribe();
    else refresh();
  });
  document.body.addEventListener("htmx:wsClose", function () {
    socket = null;
    show("reconnecting", "Reconnecting…");
    startPolling();
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
    if (status.classList.contains("conn-connecting")) startPolling();
  }, 5000);
})();
