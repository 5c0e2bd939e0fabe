/* Flamel usage pages: progressive enhancement only.
 *
 * The server renders every instant in the billing time zone, with its offset, inside
 * <time datetime="..." data-localize>. Where JavaScript runs, this rewrites those
 * instants into the browser's own time zone and says so in the note marked
 * data-tz-note. Without JavaScript the page stays exactly as the server sent it.
 * Served as a file (never inline), so a strict Content-Security-Policy applies.
 */
(function () {
  "use strict";

  // The new API key's copy button: the text of the element it names, to the clipboard.
  Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), function (button) {
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent).then(function () {
        button.textContent = button.getAttribute("data-copied");
      });
    });
  });

  var lang = document.documentElement.lang || undefined;
  var zone;
  var format;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    format = new Intl.DateTimeFormat(lang, {
      year: "numeric",
      month: "long",
      day: "numeric",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
      timeZoneName: "short"
    });
  } catch (error) {
    return; // no usable Intl: keep the billing-zone text
  }

  var times = document.querySelectorAll("time[data-localize]");
  var changed = 0;
  Array.prototype.forEach.call(times, function (element) {
    var instant = new Date(element.getAttribute("datetime"));
    if (isNaN(instant.getTime())) {
      return;
    }
    if (!element.title) {
      element.title = element.textContent; // the billing-zone time stays one hover away
    }
    element.textContent = format.format(instant);
    element.setAttribute("data-localized", "true");
    changed += 1;
  });

  var note = document.querySelector("[data-tz-note]");
  if (note && changed > 0 && zone) {
    var template = note.getAttribute("data-local-template");
    if (template) {
      note.textContent = template.replace("{zone}", zone);
    }
  }
})();
