// gridpoint UI: draws every chart of a page with the plotly.js this node serves.
// A chart is <div class="chart" data-figure="ID"> with its figure in
// <script type="application/json" id="ID">, or <div class="chart" data-src="URL"> whose
// figure this script fetches from the node (a figure that takes a while to compute).
// Clicking a point whose customdata is a path of this UI opens that page.
(function () {
  "use strict";
  var CONFIG = {
    typesetMath: false, // a "$...$" in a name is text, never a formula
    displaylogo: false,
    responsive: true,
    showLink: false,
    showSendToCloud: false,
    modeBarButtonsToRemove: ["sendDataToCloud"]
  };

  // 1, 2 or 5 times a power of ten: at most about 10 whole-number ticks over span.
  function wholeStep(span) {
    var target = Math.max(span / 10, 1);
    var power = Math.pow(10, Math.floor(Math.log10(target)));
    var factors = [1, 2, 5, 10];
    for (var i = 0; i < factors.length; i++) {
      if (factors[i] * power >= target) return factors[i] * power;
    }
    return 10 * power;
  }

  // Axes that count trials, rounds or steps keep whole-number ticks at every zoom.
  function keepWholeTicks(gd) {
    var names = (gd.layout.meta && gd.layout.meta.integer_axes) || [];
    var update = {};
    names.forEach(function (name) {
      var ax = gd.layout[name];
      if (!ax || !ax.range) return;
      var step = wholeStep(Math.abs(ax.range[1] - ax.range[0]));
      if (ax.dtick !== step) update[name + ".dtick"] = step;
    });
    if (Object.keys(update).length) Plotly.relayout(gd, update);
  }

  function draw(el, figure) {
    if (figure.error) {
      el.textContent = figure.error;
      el.classList.add("muted");
      el.dataset.drawn = "error";
      return;
    }
    Plotly.newPlot(el, figure.data, figure.layout, CONFIG).then(function (gd) {
      gd.on("plotly_click", function (event) {
        var point = event.points && event.points[0];
        var target = point && point.customdata;
        if (typeof target === "string" && target.charAt(0) === "/" && target.charAt(1) !== "/") {
          window.location.assign(target);
        }
      });
      gd.on("plotly_relayout", function () { keepWholeTicks(gd); });
      el.dataset.drawn = "1";
    });
  }

  document.querySelectorAll("div.chart[data-figure]").forEach(function (el) {
    var source = document.getElementById(el.dataset.figure);
    draw(el, JSON.parse(source.textContent));
  });
  document.querySelectorAll("div.chart[data-src]").forEach(function (el) {
    fetch(el.dataset.src, { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (figure) {
        el.textContent = ""; // the "computing" note
        draw(el, figure);
      })
      .catch(function () { draw(el, { error: "could not load this chart" }); });
  });
})();
