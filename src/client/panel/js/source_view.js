// The DebugPanel's source view: numbered, highlighted lines of the selected frame's file.
//
// Model traits: title, note (str), lines (list of HTML strings, already escaped and
// highlighted by the kernel), first (line number of lines[0]), current (line number),
// breakpoints (list of {line, condition}).
// Messages to the kernel: {event: "toggle", line} (click on a line number) and
// {event: "condition", line, condition} (the small form: right-click or Shift+click).
//
// Lines are rebuilt only when `lines` changes (a new file); moving `current` moves one
// class and scrolls this view's own box (never the notebook), so stepping does not flicker.

function el_(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function render({ model, el }) {
  el.classList.add("fb-src");
  const head = el_("div", "fb-src-head");
  const title = el_("span", "fb-src-title");
  const hint = el_("span", "fb-src-hint", "click a number: breakpoint · right-click: if…");
  head.append(title, hint);
  const body = el_("div", "fb-src-body");
  const table = el_("table", "fb-src-table");
  const note = el_("div", "fb-src-note");
  body.append(table);
  el.append(head, note, body);

  let rows = [];
  let curRow = null;
  let form = null;

  function rowOf(n) {
    return rows[n - model.get("first")] || null;
  }

  function renderLines() {
    const first = model.get("first");
    const frag = document.createDocumentFragment();
    rows = model.get("lines").map((html, i) => {
      const tr = el_("tr");
      tr.dataset.line = String(first + i);
      const gutter = el_("td", "fb-gutter", String(first + i));
      const code = el_("td", "fb-code");
      code.innerHTML = html || " ";
      tr.append(gutter, code);
      frag.append(tr);
      return tr;
    });
    closeForm();
    table.replaceChildren(frag);
    curRow = null;
    renderBreakpoints();
    renderCurrent();
  }

  function scrollInto(tr) {
    // Only this box scrolls; scrollIntoView would scroll the notebook too.
    const top = tr.offsetTop, h = tr.offsetHeight || 16, view = body.clientHeight;
    if (!view) return;
    if (top < body.scrollTop + h || top + h > body.scrollTop + view - h) {
      body.scrollTop = Math.max(0, top - Math.round(view / 3));
    }
  }

  function renderCurrent() {
    if (curRow) curRow.classList.remove("fb-cur");
    curRow = rowOf(model.get("current"));
    if (curRow) {
      curRow.classList.add("fb-cur");
      scrollInto(curRow);
    }
  }

  function renderBreakpoints() {
    for (const tr of table.querySelectorAll("tr.fb-bp")) {
      tr.classList.remove("fb-bp", "fb-bp-cond");
      tr.firstChild.removeAttribute("title");
    }
    for (const bp of model.get("breakpoints")) {
      const tr = rowOf(bp.line);
      if (!tr) continue;
      tr.classList.add("fb-bp");
      if (bp.condition) {
        tr.classList.add("fb-bp-cond");
        tr.firstChild.title = "breakpoint if " + bp.condition;
      } else {
        tr.firstChild.title = "breakpoint (click to clear)";
      }
    }
  }

  function closeForm() {
    if (form) form.remove();
    form = null;
  }

  function openForm(tr) {
    closeForm();
    const line = Number(tr.dataset.line);
    const existing = model.get("breakpoints").find((b) => b.line === line);
    form = el_("tr", "fb-cond-row");
    const cell = el_("td");
    cell.colSpan = 2;
    const input = el_("input", "fb-cond-input");
    input.placeholder = "break at line " + line + " if… (e.g. i > 3)";
    input.value = existing && existing.condition ? existing.condition : "";
    const ok = el_("button", "fb-cond-set", "set");
    const cancel = el_("button", "fb-cond-cancel", "cancel");
    const submit = () => {
      model.send({ event: "condition", line, condition: input.value.trim() });
      closeForm();
    };
    ok.addEventListener("click", submit);
    cancel.addEventListener("click", closeForm);
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") submit();
      else if (e.key === "Escape") closeForm();
      if (!e.key.startsWith("F")) e.stopPropagation();  // typing here is not a notebook shortcut
    });
    cell.append(input, ok, cancel);
    form.append(cell);
    tr.after(form);
    input.focus();
  }

  table.addEventListener("click", (e) => {
    const td = e.target.closest("td.fb-gutter");
    if (!td) return;
    if (e.shiftKey) openForm(td.parentElement);
    else model.send({ event: "toggle", line: Number(td.parentElement.dataset.line) });
  });
  table.addEventListener("contextmenu", (e) => {
    const td = e.target.closest("td.fb-gutter");
    if (!td) return;
    e.preventDefault();
    openForm(td.parentElement);
  });

  function renderHead() {
    title.textContent = model.get("title");
    note.textContent = model.get("note");
    note.style.display = model.get("note") ? "" : "none";
  }

  model.on("change:lines", renderLines);
  model.on("change:first", renderLines);
  model.on("change:current", renderCurrent);
  model.on("change:breakpoints", renderBreakpoints);
  model.on("change:title", renderHead);
  model.on("change:note", renderHead);
  renderHead();
  renderLines();
  // The first layout: offsets are known only once the view is in the page.
  requestAnimationFrame(() => curRow && scrollInto(curRow));
}

export default { render };
