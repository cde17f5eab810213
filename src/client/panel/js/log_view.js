// The DebugPanel's job output: the last lines the target printed, stderr marked.
//
// Model traits: lines (list of [stream, text]; stream 2 is stderr), note (str: what the
// view says above the lines). The box follows new lines while it is scrolled to the
// bottom, and stays put while the user reads further up.

function render({ model, el }) {
  el.classList.add("fb-log");
  const note = document.createElement("div");
  note.className = "fb-log-note";
  const box = document.createElement("pre");
  box.className = "fb-log-body";
  el.append(note, box);

  function renderLines() {
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 8;
    const frag = document.createDocumentFragment();
    for (const [stream, text] of model.get("lines")) {
      const line = document.createElement("div");
      line.className = stream === 2 ? "fb-log-line fb-stderr" : "fb-log-line";
      line.textContent = text || "\u200b";
      frag.append(line);
    }
    box.replaceChildren(frag);
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  function renderNote() {
    note.textContent = model.get("note");
  }

  model.on("change:lines", renderLines);
  model.on("change:note", renderNote);
  renderNote();
  renderLines();
  requestAnimationFrame(() => { box.scrollTop = box.scrollHeight; });
}

export default { render };
