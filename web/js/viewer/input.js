// The viewer's mouse, touch, wheel and keyboard bindings. They call `actions`; the page
// owns the state. Left drag: window/level (or pan with the pan tool); middle or right
// drag: pan; wheel: slices; ctrl+wheel: zoom about the pointer.

export const SHORTCUTS = [
  ['↑ ↓  or  ← →', 'Previous / next image'],
  ['Mouse wheel', 'Scroll through images'],
  ['Page Up / Page Down', '10 images back / forward'],
  ['Home / End', 'First / last image'],
  ['Left drag', 'Window (horizontal) / level (vertical)'],
  ['Right or middle drag', 'Pan'],
  ['Ctrl + wheel,  + / −', 'Zoom in / out'],
  ['0  or  R', 'Reset zoom, pan and window'],
  ['1 2 3 4', 'Presets: soft tissue, lung, bone, default'],
  ['P', 'Pan tool on / off'],
  ['Space', 'Play / pause (multi-frame)'],
  ['?', 'Show or hide this help'],
];

export function bindInput(viewport, actions) {
  let drag = null;
  let wheelSum = 0;

  const onPointerDown = (e) => {
    if (e.button !== 0 && e.button !== 1 && e.button !== 2) return;
    e.preventDefault();
    viewport.focus({ preventScroll: true });
    const mode = e.button === 0 && !actions.panTool() && !e.shiftKey ? 'window' : 'pan';
    drag = { id: e.pointerId, mode, x: e.clientX, y: e.clientY };
    viewport.setPointerCapture(e.pointerId);
    viewport.classList.add(mode === 'pan' ? 'is-panning' : 'is-windowing');
    actions.dragStart(mode);
  };
  const onPointerMove = (e) => {
    if (!drag || e.pointerId !== drag.id) return;
    const dx = e.clientX - drag.x;
    const dy = e.clientY - drag.y;
    drag.x = e.clientX;
    drag.y = e.clientY;
    if (drag.mode === 'pan') actions.pan(dx, dy);
    else actions.window(dx, dy);
  };
  const onPointerUp = (e) => {
    if (!drag || e.pointerId !== drag.id) return;
    viewport.classList.remove('is-panning', 'is-windowing');
    actions.dragEnd(drag.mode);
    drag = null;
  };
  const onWheel = (e) => {
    e.preventDefault();
    if (e.ctrlKey || e.metaKey) {
      const rect = viewport.getBoundingClientRect();
      const factor = Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.002));
      actions.zoomAt(factor, e.clientX - rect.left - rect.width / 2, e.clientY - rect.top - rect.height / 2);
      return;
    }
    // A mouse wheel notch (~100 px, or 3 lines) is one image; trackpads send many small
    // deltas, summed until they make one.
    const delta = e.deltaMode === 1 ? e.deltaY * 33 : e.deltaY;
    if (Math.abs(delta) >= 50) {
      wheelSum = 0;
      actions.step(Math.sign(delta));
      return;
    }
    wheelSum += delta;
    if (Math.abs(wheelSum) >= 40) {
      actions.step(Math.sign(wheelSum));
      wheelSum = 0;
    }
  };
  const onKey = (e) => {
    if (e.defaultPrevented || e.altKey) return;
    const target = e.target;
    if (target.closest && target.closest('input, select, textarea, dialog[open]')) return;
    if ((e.ctrlKey || e.metaKey) && !['+', '=', '-'].includes(e.key)) return;
    const keys = {
      ArrowDown: () => actions.step(1), ArrowRight: () => actions.step(1), j: () => actions.step(1),
      ArrowUp: () => actions.step(-1), ArrowLeft: () => actions.step(-1), k: () => actions.step(-1),
      PageDown: () => actions.step(10), PageUp: () => actions.step(-10),
      Home: () => actions.goto(0), End: () => actions.goto(Infinity),
      '+': () => actions.zoomAt(1.25, 0, 0), '=': () => actions.zoomAt(1.25, 0, 0), '-': () => actions.zoomAt(0.8, 0, 0),
      0: () => actions.reset(), r: () => actions.reset(), R: () => actions.reset(),
      1: () => actions.preset('soft'), 2: () => actions.preset('lung'), 3: () => actions.preset('bone'), 4: () => actions.preset('default'),
      p: () => actions.togglePan(), P: () => actions.togglePan(),
      ' ': () => actions.togglePlay(),
      '?': () => actions.help(),
    };
    const run = keys[e.key];
    if (!run) return;
    // Space and arrows on a focused button belong to the button.
    if ((e.key === ' ' || e.key === 'Enter') && target.closest && target.closest('button, a')) return;
    e.preventDefault();
    run();
  };
  const noMenu = (e) => e.preventDefault();

  viewport.addEventListener('pointerdown', onPointerDown);
  viewport.addEventListener('pointermove', onPointerMove);
  viewport.addEventListener('pointerup', onPointerUp);
  viewport.addEventListener('pointercancel', onPointerUp);
  viewport.addEventListener('wheel', onWheel, { passive: false });
  viewport.addEventListener('contextmenu', noMenu);
  viewport.addEventListener('auxclick', noMenu);
  document.addEventListener('keydown', onKey);
  return () => {
    document.removeEventListener('keydown', onKey);
  };
}
