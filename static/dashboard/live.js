/* Live dashboard glue: connection indicator, 2 s polling fallback while the socket is down,
   and a fresh snapshot on every (re)connect. The socket itself is htmx's ws extension, which
   reconnects with exponential backoff and full jitter. */
(function () {
  "use strict";
  var POLL_MS = 2000;
  var live = document.getElementById("live");
  var status = document.getElementById("connection-status");
  if (!live || !status) return;
  var pollUrl = live.getAttribute("data-poll-url");
  var pollTimer = null;

  function show(state, text) {
    status.className = "conn conn-" + state;
    status.textContent = text;
  }

  function refresh() {
    if (window.htmx) {
      htmx.ajax("GET", pollUrl, { target: "#live-metrics", swap: "outerHTML" });
    }
  }

  function startPolling() {
    if (pollTimer) return;
    show("polling", "Polling");
    refresh();
    pollTimer = setInterval(refresh, POLL_MS);
  }

  function stopPolling() {
    if (pollTimer) clearInterval(pollTimer);
    pollTimer = null;
  }

  document.body.addEventListener("htmx:wsOpen", function () {
    stopPolling();
    show("live", "Live");
    refresh(); // resynchronise from a fresh snapshot after any gap
  });
  document.body.addEventListener("htmx:wsClose", function () {
    show("reconnecting", "Reconnecting…");
    startPolling();
  });
  document.body.addEventListener("htmx:wsError", function () {
    startPolling();
  });
  // No socket within 5 s (blocked proxy, server without WebSockets): poll meanwhile.
  setTimeout(function () {
    if (status.classList.contains("conn-connecting")) startPolling();
  }, 5000);
})();
