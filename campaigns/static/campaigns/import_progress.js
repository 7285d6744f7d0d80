// A big CSV import's progress: the form posts as usual (the browser keeps this page until the answer comes), and
// meanwhile this page asks the server how far the import has got, under a token of its own.
(function () {
  "use strict";
  const box = document.getElementById("import-progress");
  const form = box && document.getElementById(box.dataset.form);
  if (!form || !window.fetch || !form.elements.progress) {
    return;
  }
  const randomToken = () => {
    if (window.crypto && crypto.randomUUID) {
      return crypto.randomUUID();
    }
    return Date.now().toString(16) + "-" + Math.random().toString(16).slice(2);
  };
  form.addEventListener("submit", () => {
    const token = randomToken();
    form.elements.progress.value = token;
    const bar = box.querySelector("progress");
    const text = box.querySelector(".progress-text");
    const url = box.dataset.url.replace("TOKEN", token);
    box.hidden = false;
    text.textContent = box.dataset.uploading;
    bar.removeAttribute("value"); // moving, until the server knows how much there is
    window.setTimeout(() => {
      form.querySelectorAll("[type=submit]").forEach((button) => { button.disabled = true; });
    }, 0);
    const look = () => {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((response) => (response.ok ? response.json() : null))
        .then((state) => {
          if (!state) {
            return;
          }
          text.textContent = state.text;
          box.dataset.stage = state.stage;
          if (state.total > 0) {
            bar.max = state.total;
            bar.value = state.done;
          }
        })
        .catch(() => {})
        .finally(() => window.setTimeout(look, 300));
    };
    window.setTimeout(look, 300);
  });
})();
