// Debugger keys for the DebugPanel: F5 continue, F10 next, F11 step, Shift+F11 step out.
//
// The listener sits on window in the capture phase, so it sees a key before JupyterLab's
// shortcuts and the browser's own (F5 reload, F11 full screen) and can cancel it. It acts
// only while its panel "has focus": focus is inside the panel, or the last click was.
// JupyterLab moves DOM focus to the notebook when an output is clicked, so the click is
// what counts; the panel shows it with the fb-armed outline.
const KEYS = { F5: "F5", F10: "F10", F11: "F11" };

function render({ model, el }) {
  el.classList.add("fb-keys-widget");
  const panel = () => el.closest(".fb-panel");
  let armed = false;

  function arm(on) {
    armed = on;
    const p = panel();
    if (p) p.classList.toggle("fb-armed", on);
  }

  function onPointer(event) {
    const p = panel();
    if (!p) return;
    if (!p.hasAttribute("tabindex")) p.tabIndex = -1;  // focusable by a click, not by Tab
    arm(p.contains(event.target));
  }

  function onKey(event) {
    const p = panel();
    if (!p || !KEYS[event.key]) return;
    if (!armed && !p.contains(document.activeElement)) return;
    event.preventDefault();
    event.stopPropagation();
    event.stopImmediatePropagation();
    if (event.repeat) return;
    model.send({ event: "key", key: event.key, shift: event.shiftKey });
  }

  window.addEventListener("pointerdown", onPointer, true);
  window.addEventListener("keydown", onKey, true);
  return () => {
    window.removeEventListener("pointerdown", onPointer, true);
    window.removeEventListener("keydown", onKey, true);
  };
}

export default { render };
