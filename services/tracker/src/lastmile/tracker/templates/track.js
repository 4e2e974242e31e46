(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  function $(id) { return document.getElementById(id); }
  function show(id, on) { $(id).hidden = !on; }

  function clock(iso) {
    var d = new Date(iso);
    var now = new Date();
    var time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (d.toDateString() === now.toDateString()) { return time; }
    return d.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" }) + ", " + time;
  }

  function setTime(el, iso) {
    el.textContent = "";
    if (!iso) { return; }
    var t = document.createElement("time");
    t.setAttribute("datetime", iso);
    t.textContent = clock(iso);
    el.appendChild(t);
  }

  function stopsText(n) {
    if (n === null || n === undefined) { return ""; }
    if (n === 0) { return "Your stop is next."; }
    return n === 1 ? "1 stop before yours." : n + " stops before yours.";
  }

  function drawMap(map, vehicle) {
    var half = map.size / 2;
    var tiles = $("tiles"), rings = $("rings"), van = $("vehicle");
    tiles.replaceChildren();
    map.tiles.forEach(function (tile) {
      var img = document.createElementNS(SVG, "image");
      img.setAttribute("href", tile.href);
      img.setAttribute("x", tile.x);
      img.setAttribute("y", tile.y);
      img.setAttribute("width", 256);
      img.setAttribute("height", 256);
      tiles.appendChild(img);
    });
    rings.replaceChildren();
    map.rings.forEach(function (ring) {
      var c = document.createElementNS(SVG, "circle");
      c.setAttribute("class", "ring");
      c.setAttribute("cx", half);
      c.setAttribute("cy", half);
      c.setAttribute("r", ring.radius);
      var label = document.createElementNS(SVG, "text");
      label.setAttribute("class", "ring-label");
      label.setAttribute("x", half + 3);
      label.setAttribute("y", half - ring.radius - 3);
      label.textContent = ring.label;
      rings.appendChild(c);
      rings.appendChild(label);
    });
    if (map.vehicle_x === null || map.vehicle_x === undefined) {
      van.setAttribute("hidden", "");
    } else {
      van.removeAttribute("hidden");
      van.setAttribute("transform", "translate(" + map.vehicle_x + " " + map.vehicle_y + ")");
      van.setAttribute("data-x", map.vehicle_x);
      van.setAttribute("data-y", map.vehicle_y);
    }
    $("map-desc").textContent = vehicle ? vehicle.description : "";
    $("vehicle-text").textContent = vehicle ? vehicle.description : "";
    $("attribution").textContent = map.attribution || "";
    show("attribution", !!map.attribution);
  }

  function drawTimeline(steps) {
    var list = $("timeline");
    list.replaceChildren();
    steps.forEach(function (step) {
      var li = document.createElement("li");
      if (step.reached) { li.className = "reached"; }
      if (step.current) { li.setAttribute("aria-current", "step"); }
      var label = document.createElement("span");
      label.textContent = step.label;
      li.appendChild(label);
      if (step.at) {
        var t = document.createElement("time");
        t.setAttribute("datetime", step.at);
        t.textContent = clock(step.at);
        li.appendChild(t);
      }
      list.appendChild(li);
    });
  }

  function render(view) {
    document.title = view.status_label + " · " + (view.merchant || "Your delivery");
    $("status").textContent = view.status_label;
    setTime($("eta"), view.eta);
    show("eta-block", !!view.eta);
    show("window", !!view.promised_window);
    if (view.promised_window) {
      $("window-start").setAttribute("datetime", view.promised_window.start);
      $("window-start").textContent = clock(view.promised_window.start);
      $("window-end").setAttribute("datetime", view.promised_window.end);
      $("window-end").textContent = clock(view.promised_window.end);
    }
    $("stops").textContent = stopsText(view.stops_before);
    show("stops", view.stops_before !== null && view.stops_before !== undefined);
    var outcome = $("outcome");
    outcome.textContent = "Delivered";
    if (view.completed_at) {
      outcome.appendChild(document.createTextNode(" at "));
      var t = document.createElement("time");
      t.setAttribute("datetime", view.completed_at);
      t.textContent = clock(view.completed_at);
      outcome.appendChild(t);
    }
    show("outcome", view.status === "delivered");
    $("failure").textContent = view.failure || "";
    show("failure", !!view.failure);
    show("map-card", !!view.vehicle);
    drawMap(view.map, view.vehicle);
    drawTimeline(view.timeline);
  }

  var initial = JSON.parse($("initial").textContent);
  render(initial);
  if (!window.EventSource) {
    $("live").textContent = "Reload the page to see the latest.";
    return;
  }
  var source = new EventSource(window.location.pathname.replace(/\/$/, "") + "/events");
  source.addEventListener("update", function (e) {
    render(JSON.parse(e.data));
    $("live").textContent = "Updated " + new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) + ".";
  });
  source.addEventListener("gone", function () {
    source.close();
    $("live").textContent = "This link has expired.";
  });
})();
