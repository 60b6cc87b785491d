// Progressive enhancement: while an upload is analysed, say so and refuse a second submission.
document.querySelectorAll("form.upload").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (form.dataset.busy) {
      event.preventDefault();
      return;
    }
    form.dataset.busy = "1";
    const button = form.querySelector("button[type=submit]");
    if (button) {
      button.disabled = true;
      button.textContent = button.dataset.busyLabel || button.textContent;
      form.setAttribute("aria-busy", "true");
    }
  });
});
// A page restored from the back/forward cache gets its button back.
window.addEventListener("pageshow", () => {
  document.querySelectorAll("form.upload").forEach((form) => {
    delete form.dataset.busy;
    form.removeAttribute("aria-busy");
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = false;
  });
});
