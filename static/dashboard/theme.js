/* Theme toggle: follows the system until the user picks; the choice is kept in localStorage. */
(function () {
  "use strict";
  var root = document.documentElement;
  var button = document.getElementById("theme-toggle");
  if (!button) return;
  var media = window.matchMedia("(prefers-color-scheme: dark)");
  function isDark() {
    return root.dataset.theme ? root.dataset.theme === "dark" : media.matches;
  }
  function render() {
    button.setAttribute("aria-pressed", String(isDark()));
    button.textContent = isDark() ? "Light mode" : "Dark mode";
  }
  button.addEventListener("click", function () {
    root.dataset.theme = isDark() ? "light" : "dark";
    try { localStorage.setItem("botflow-theme", root.dataset.theme); } catch (e) {}
    render();
    document.dispatchEvent(new Event("botflow:theme"));
  });
  media.addEventListener("change", render);
  render();
})();
