// A clickable table (the DebugPanel's variables): click a row to pick it.
//
// Model traits: columns (list of str), rows (list of lists of str; the first cell is the
// row's key), row_classes (list of str, one per row), selected (key), empty (text shown
// without rows). Message to the kernel: {event: "select", key}.

function render({ model, el }) {
  el.classList.add("fb-table");
  const box = document.createElement("div");
  box.className = "fb-table-body";
  const table = document.createElement("table");
  const empty = document.createElement("div");
  empty.className = "fb-table-empty";
  box.append(table);
  el.append(empty, box);

  function renderRows() {
    const rows = model.get("rows");
    const classes = model.get("row_classes");
    const selected = model.get("selected");
    empty.textContent = rows.length ? "" : model.get("empty");
    empty.style.display = rows.length ? "none" : "";
    box.style.display = rows.length ? "" : "none";
    const head = document.createElement("tr");
    for (const c of model.get("columns")) {
      const th = document.createElement("th");
      th.textContent = c;
      head.append(th);
    }
    const frag = document.createDocumentFragment();
    frag.append(head);
    rows.forEach((row, i) => {
      const tr = document.createElement("tr");
      tr.dataset.key = row[0];
      tr.className = (classes[i] || "") + (row[0] === selected ? " fb-selected" : "");
      for (const cell of row) {
        const td = document.createElement("td");
        td.textContent = cell;
        td.title = cell.length > 40 ? cell : "";
        tr.append(td);
      }
      frag.append(tr);
    });
    const scroll = box.scrollTop;
    table.replaceChildren(frag);
    box.scrollTop = scroll;
  }

  function renderSelected() {
    const selected = model.get("selected");
    for (const tr of table.querySelectorAll("tr[data-key]")) {
      tr.classList.toggle("fb-selected", tr.dataset.key === selected);
    }
  }

  table.addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-key]");
    if (tr) model.send({ event: "select", key: tr.dataset.key });
  });
  model.on("change:rows", renderRows);
  model.on("change:row_classes", renderRows);
  model.on("change:columns", renderRows);
  model.on("change:empty", renderRows);
  model.on("change:selected", renderSelected);
  renderRows();
}

export default { render };
