/* Insights page: draws every [data-figure] chart from its embedded JSON (as live.js does on the
   live page) and redraws it when the theme changes. Colours written "var(--name)" come from CSS. */
(function () {
  "use strict";
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
  function draw() {
    if (!window.Plotly) return;
    var style = getComputedStyle(document.body);
    var border = style.getPropertyValue("--border").trim();
    document.querySelectorAll("[data-figure]").forEach(function (holder) {
      var source = document.getElementById(holder.getAttribute("data-figure"));
      if (!source) return;
      var figure = themed(JSON.parse(source.textContent), style);
      var layout = figure.layout || {};
      layout.font = Object.assign({ color: style.color, family: style.fontFamily }, layout.font);
      ["xaxis", "yaxis"].forEach(function (name) {
        if (layout[name]) layout[name].gridcolor = layout[name].zerolinecolor = layout[name].linecolor = border;
      });
      Plotly.react(holder, figure.data, layout, { displayModeBar: false, responsive: true });
    });
  }
  // A picker marked data-submit-on-change submits its form at once (no inline handler: CSP).
  document.querySelectorAll("[data-submit-on-change]").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });
  document.addEventListener("botflow:theme", draw);
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", draw);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
