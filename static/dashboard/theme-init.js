/* Runs in <head> before the first paint: apply the theme the user picked (no flash of the other). */
try {
  var botflowTheme = localStorage.getItem("botflow-theme");
  if (botflowTheme) document.documentElement.dataset.theme = botflowTheme;
} catch (e) {}
