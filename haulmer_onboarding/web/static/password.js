// CREAR CONTRASEÑA: shows, as the customer types, which parts of the rule
// the password meets and whether the confirmation matches. The server
// checks the same rule again; this script only helps and never blocks.
(function () {
  "use strict";
  var form = document.querySelector("form[data-password-rules]");
  if (!form) { return; }
  var password = form.querySelector("#password");
  var confirmation = form.querySelector("#confirmation");
  var match = document.getElementById("confirmation-match");
  var minLength = parseInt(form.getAttribute("data-min-length"), 10) || 8;
  // The same tests as passwords.check_policy, after the same NFKC form.
  var rules = {
    length: function (text) { return Array.from(text).length >= minLength; },
    lower: function (text) { return /\p{Ll}/u.test(text); },
    upper: function (text) { return /\p{Lu}/u.test(text); },
    digit: function (text) { return /\p{Nd}/u.test(text); }
  };

  function normalized(input) {
    return input.value.normalize ? input.value.normalize("NFKC") : input.value;
  }

  function mark(element, met, typed) {
    element.classList.toggle("met", typed && met);
    element.classList.toggle("unmet", typed && !met);
    var state = element.querySelector(".sr-only");
    if (state) { state.textContent = !typed ? "" : met ? " (cumple)" : " (falta)"; }
  }

  function check() {
    var text = normalized(password);
    var typed = text.length > 0;
    var all = true;
    form.querySelectorAll("[data-rule]").forEach(function (item) {
      var met = rules[item.getAttribute("data-rule")](text);
      all = all && met;
      mark(item, met, typed);
    });
    var again = normalized(confirmation);
    if (!again) {
      match.textContent = "";
      mark(match, false, false);
    } else {
      var same = again === text;
      match.textContent = same ? "Las contraseñas coinciden."
        : "Las contraseñas no coinciden.";
      mark(match, same, true);
    }
    form.setAttribute("data-password-ok", String(all && again === text));
  }

  password.addEventListener("input", check);
  confirmation.addEventListener("input", check);
  check();
})();
