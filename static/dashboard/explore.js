/* Explore pages: draw each chart from the JSON rendered beside it ([data-figure] names the
   json_script id); clicking a point or bar opens the explorer filtered to that bucket (the URL is
   the point's customdata). A preset range clears the custom dates. */
(function () {
  "use strict";

  function draw() {
    if (!window.Plotly) return;
    var style = getComputedStyle(document.body);
    document.querySelectorAll(".chart[data-figure]").forEach(function (holder) {
      var source = document.getElementById(holder.getAttribute("data-figure"));
      if (!source) return;
      var figure = JSON.parse(source.textContent);
      resolveColors(figure, style);
      figure.layout.font = { color: style.color, family: style.fontFamily };
      ["xaxis", "yaxis", "yaxis2"].forEach(function (axis) {
        if (figure.layout[axis]) figure.layout[axis].gridcolor = style.getPropertyValue("--border");
      });
      Plotly.react(holder, figure.data, figure.layout, { displayModeBar: false, responsive: true });
      if (!holder.dataset.drill) {
        holder.dataset.drill = "1";
        holder.on("plotly_click", function (event) {
          var point = event.points && event.points[0];
          if (point && point.customdata) window.location.href = point.customdata;
        });
      }
    });
  }

  // Colours are CSS variables ("var(--accent)") so charts follow the light or dark theme.
  function resolveColors(value, style) {
    if (Array.isArray(value)) {
      for (var i = 0; i < value.length; i++) {
        if (typeof value[i] === "string") value[i] = resolve(value[i], style);
        else resolveColors(value[i], style);
      }
    } else if (value && typeof value === "object") {
      Object.keys(value).forEach(function (key) {
        if (key === "customdata") return;
        if (typeof value[key] === "string") value[key] = resolve(value[key], style);
        else resolveColors(value[key], style);
      });
    }
  }
  function resolve(text, style) {
    var m = /^var\((--[\w-]+)\)$/.exec(text);
    return m ? style.getPropertyValue(m[1]).trim() || text : text;
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.name === "period" && target.type === "radio") {
      ["f-start", "f-end"].forEach(function (id) {
        var input = document.getElementById(id);
        if (input) input.value = "";
      });
    }
  }, true);
  document.addEventListener("botflow:theme", draw);
  window.addEventListener("DOMContentLoaded", draw);
  if (document.readyState !== "loading") draw();
})();
