// m2mauth console: enhancements only. Every action works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Copy buttons: <button class="copy" data-copy="element-id">.
  for (const btn of document.querySelectorAll("button[data-copy]")) {
    btn.hidden = false;
    btn.addEventListener("click", async () => {
      const el = document.getElementById(btn.dataset.copy);
      if (!el) return;
      const text = el.value !== undefined ? el.value : el.textContent;
      try {
        await navigator.clipboard.writeText(text.trim());
        btn.dataset.copied = "";
        setTimeout(() => delete btn.dataset.copied, 2000);
      } catch {
        // Clipboard refused (no secure context): select the text instead.
        const range = document.createRange();
        range.selectNodeContents(el);
        const sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
      }
    });
  }
  // Confirm dialogs: <form data-confirm="message">.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  }
  // A select that submits its form when changed (the environment
  // switcher; its button does the same without this file).
  for (const sel of document.querySelectorAll("select[data-autosubmit]")) {
    sel.addEventListener("change", () => sel.form?.requestSubmit());
  }
  // Ticking a scope of an API ticks the API's "Grant access" too.
  for (const scope of document.querySelectorAll('input[type="checkbox"][name^="scope:"]')) {
    scope.addEventListener("change", () => {
      const grant = scope.closest("fieldset")?.querySelector('input[type="checkbox"][name="grant"]');
      if (scope.checked && grant) grant.checked = true;
    });
  }
  // Live filter of a list: <input data-filter="table-id">.
  for (const input of document.querySelectorAll("input[data-filter]")) {
    const table = document.getElementById(input.dataset.filter);
    if (!table) continue;
    input.addEventListener("input", () => {
      const q = input.value.toLowerCase();
      for (const row of table.tBodies[0].rows) {
        row.hidden = q !== "" && !row.textContent.toLowerCase().includes(q);
      }
    });
  }
});
