// /ui/series/{id}?i=N: the image viewer. One rendered image at a time, from the server's
// `/frames/{n}/rendered` with the window as query parameters; zoom and pan in CSS.

import { renderedUrl } from '../api.js';
import { replaceQuery } from '../router.js';
import { h, icon, reportError, setTitle } from '../ui.js';
import { personName, dicomDate, dicomTime, level } from '../format.js';
import { loadStack, instanceTags, defaultWindow, cineRate } from '../viewer/stack.js';
import { ImageCache } from '../viewer/images.js';
import { bindInput, SHORTCUTS } from '../viewer/input.js';
import { fillStrip } from '../viewer/strip.js';
import { windowPreview } from '../viewer/preview.js';

const PRESETS = {
  soft: { label: 'Soft tissue', center: 40, width: 400 },
  lung: { label: 'Lung', center: -600, width: 1500 },
  bone: { label: 'Bone', center: 300, width: 2000 },
  default: { label: 'Default' },
};
const MIN_ZOOM = 0.1;
const MAX_ZOOM = 20;

function button(attrs, ...children) {
  return h('button', { type: 'button', class: 'tool-btn', ...attrs }, ...children);
}

export function mount(main, { params: [seriesId], query }) {
  const controller = new AbortController();
  const cache = new ImageCache();
  const state = {
    index: Math.max(0, parseInt(query.get('i'), 10) || 0),
    win: null, base: null, zoom: 1, panX: 0, panY: 0, panTool: false, playing: false, direction: 1,
  };
  let stack = null;
  let fps = 15;
  let fit = 1;
  let natural = { w: 0, h: 0 };
  let shownUrl = '';
  let shownWin = null;   // the window the shown image was rendered with
  let token = 0;
  let windowing = false;
  let unbind = () => {};
  const timers = { wl: 0, url: 0, play: 0, busy: 0 };
  let wlBusy = false;
  let wlPending = false;
  let dragWidth = 1;

  setTitle('Viewer');
  const slice = h('img', { id: 'slice', alt: '', draggable: 'false' });
  const status = h('div', { class: 'viewport-status', role: 'status', 'aria-live': 'polite' });
  const corners = {
    tl: h('div', { class: 'corner tl' }), tr: h('div', { class: 'corner tr' }),
    bl: h('div', { class: 'corner bl' }), br: h('div', { class: 'corner br' }),
  };
  const sliceLabel = h('span', { id: 'slice-label' }, '– / –');
  const wlLabel = h('span', { id: 'wl-label' }, 'W – C –');
  const zoomLabel = h('span', { class: 'zoom-label' }, '');
  const numberLabel = h('span', {});
  const frameLabel = h('span', {});
  const overlay = h('div', { id: 'overlay', 'aria-hidden': 'true' }, Object.values(corners));
  const preview = windowPreview();
  const viewport = h('div', {
    id: 'viewport', tabindex: 0, role: 'application',
    'aria-label': 'Image. Arrow keys change the image; drag to change the window; press ? for all shortcuts.',
  }, slice, overlay, status, preview.svg);
  const slider = h('input', { id: 'slice-slider', type: 'range', min: 0, max: 0, step: 1, value: 0, 'aria-label': 'Image in the series' });
  const sliderText = h('span', { class: 'slider-text', 'aria-hidden': 'true' });
  const presetButtons = Object.entries(PRESETS).map(([key, p]) =>
    button({ 'data-preset': key, 'aria-pressed': 'false', title: `${p.label}${p.width ? ` (W ${p.width} C ${p.center})` : ' (the data set\'s window)'}`, onclick: () => actions.preset(key) }, p.label));
  const panButton = button({ id: 'tool-pan', 'aria-pressed': 'false', title: 'Pan tool (P)', 'aria-label': 'Pan tool', onclick: () => actions.togglePan() }, icon('pan'), h('span', { class: 'tool-text' }, 'Pan'));
  const playButton = button({ id: 'play', class: 'tool-btn tool-play', title: 'Play / pause (Space)', onclick: () => actions.togglePlay() });
  const help = h('div', { id: 'viewer-help', class: 'help-popover', popover: 'auto', role: 'dialog', 'aria-label': 'Keyboard shortcuts' },
    h('h2', {}, 'Shortcuts'),
    h('dl', { class: 'shortcuts' }, SHORTCUTS.map(([k, v]) => [h('dt', {}, h('kbd', {}, k)), h('dd', {}, v)])));
  const helpButton = button({ id: 'help', title: 'Keyboard shortcuts (?)', 'aria-label': 'Keyboard shortcuts', popovertarget: 'viewer-help' }, icon('help'));
  const back = h('a', { class: 'tool-btn back-link', href: '/ui/', 'aria-label': 'Back to the study', title: 'Back to the study' }, icon('back'), h('span', { class: 'tool-text' }, 'Study'));
  const title = h('div', { class: 'viewer-title' }, h('strong', {}, 'Loading…'));
  const playSlot = h('div', { class: 'tool-group play-slot' });
  const stripList = h('ol', { class: 'strip-list' });
  const strip = h('nav', { class: 'series-strip', 'aria-label': 'Series of this study' }, stripList);

  main.append(h('section', { class: 'viewer' },
    h('div', { class: 'viewer-toolbar', role: 'toolbar', 'aria-label': 'Viewer tools' },
      back, title,
      h('div', { class: 'tool-group', role: 'group', 'aria-label': 'Window presets' }, icon('contrast'), presetButtons),
      h('div', { class: 'tool-group', role: 'group', 'aria-label': 'Zoom and pan' },
        panButton,
        button({ id: 'zoom-out', title: 'Zoom out (−)', 'aria-label': 'Zoom out', onclick: () => actions.zoomAt(0.8, 0, 0) }, icon('zoomOut')),
        button({ id: 'zoom-in', title: 'Zoom in (+)', 'aria-label': 'Zoom in', onclick: () => actions.zoomAt(1.25, 0, 0) }, icon('zoomIn')),
        button({ id: 'reset', title: 'Reset zoom, pan and window (0)', 'aria-label': 'Reset', onclick: () => actions.reset() }, icon('reset'), h('span', { class: 'tool-text' }, 'Reset'))),
      playSlot,
      h('div', { class: 'tool-group' }, helpButton)),
    h('div', { class: 'viewer-stage' }, strip, viewport, help),
    h('div', { class: 'viewer-slider' }, slider, sliderText)));

  // ---- drawing ----------------------------------------------------------------------

  function entry() { return stack.entries[state.index]; }
  function urlOf(i, win = state.win) {
    const e = stack.entries[i];
    return renderedUrl(e.instance, e.frame, win || {});
  }

  function layout() {
    const vw = viewport.clientWidth;
    const vh = viewport.clientHeight;
    if (natural.w && vw && vh) {
      fit = Math.min(vw / natural.w, vh / natural.h);
      slice.style.width = `${natural.w * fit}px`;
      slice.style.height = `${natural.h * fit}px`;
    }
    slice.style.transform = `translate(-50%, -50%) translate(${state.panX}px, ${state.panY}px) scale(${state.zoom})`;
    zoomLabel.textContent = natural.w ? `Zoom ${Math.round(fit * state.zoom * 100)}%` : '';
  }

  function labels() {
    const n = stack.entries.length;
    const e = entry();
    sliceLabel.textContent = `${state.index + 1} / ${n}`;
    slice.alt = `Image ${state.index + 1} of ${n}`;
    sliderText.textContent = `${state.index + 1} / ${n}`;
    slider.value = String(state.index);
    slider.setAttribute('aria-valuetext', `Image ${state.index + 1} of ${n}`);
    wlLabel.textContent = state.win ? `W ${level(state.win.width)} C ${level(state.win.center)}` : 'W – C –';
    numberLabel.textContent = e.number ? `Instance #${e.number}` : '';
    frameLabel.textContent = e.frames > 1 ? `Frame ${e.frame + 1} / ${e.frames}` : '';
    for (const b of presetButtons) {
      const p = PRESETS[b.dataset.preset];
      const w = p.width ? p : state.base;
      const on = !!(state.win && w && state.win.width === w.width && state.win.center === w.center);
      b.setAttribute('aria-pressed', String(on));
    }
    const multi = e.frames > 1;
    if (multi && !playButton.isConnected) playSlot.append(playButton);
    if (!multi && playButton.isConnected) { stopPlay(); playButton.remove(); }
    playButton.replaceChildren(icon(state.playing ? 'pause' : 'play'), h('span', { class: 'tool-text' }, state.playing ? 'Pause' : 'Play'));
    playButton.setAttribute('aria-pressed', String(state.playing));
    playButton.setAttribute('aria-label', state.playing ? 'Pause' : 'Play');
    clearTimeout(timers.url);
    timers.url = setTimeout(() => {
      const q = new URLSearchParams(location.search);
      if (state.index) q.set('i', String(state.index)); else q.delete('i');
      if (location.pathname === `/ui/series/${seriesId}`) replaceQuery(q);
    }, 250);
  }

  /** Shows the current image once loaded (the previous one stays until then). */
  async function show() {
    const url = urlOf(state.index);
    if (url === shownUrl) return;
    const win = state.win;
    const mine = ++token;
    clearTimeout(timers.busy);
    if (!cache.isLoaded(url)) timers.busy = setTimeout(() => viewport.classList.add('is-busy'), 200);
    try {
      const img = await cache.load(url);
      if (mine !== token) return;
      slice.src = url;
      shownUrl = url;
      shownWin = win;
      slice.style.filter = '';
      status.textContent = '';
      viewport.classList.remove('has-error');
      if (img.naturalWidth !== natural.w || img.naturalHeight !== natural.h) {
        natural = { w: img.naturalWidth, h: img.naturalHeight };
        layout();
      }
      if (!windowing) prefetch();
    } catch (error) {
      if (mine !== token) return;
      shownUrl = '';
      if (!slice.src || slice.src === location.href) viewport.classList.add('has-error');
      status.textContent = error.message;
      stopPlay();
    } finally {
      if (mine === token) {
        clearTimeout(timers.busy);
        viewport.classList.remove('is-busy');
      }
    }
  }

  function prefetch() {
    const n = stack.entries.length;
    const urls = [];
    const ahead = state.playing ? 12 : 6;
    for (let k = 1; k <= ahead; k += 1) {
      const fwd = state.index + k * state.direction;
      if (fwd >= 0 && fwd < n) urls.push(urlOf(fwd));
      const bwd = state.index - k * state.direction;
      if (k <= 3 && bwd >= 0 && bwd < n) urls.push(urlOf(bwd));
    }
    cache.prefetch(urls);
  }

  /** While dragging the window: one request at a time, for the latest window. */
  function showWindowed() {
    clearTimeout(timers.wl);
    timers.wl = setTimeout(async () => {
      if (wlBusy) { wlPending = true; return; }
      wlBusy = true;
      await show();
      wlBusy = false;
      if (wlPending) { wlPending = false; showWindowed(); }
    }, 40);
  }

  function update({ windowed = false } = {}) {
    if (!stack) return;
    labels();
    if (windowed) showWindowed();
    else show();
  }

  // ---- cine --------------------------------------------------------------------------

  function stopPlay() {
    state.playing = false;
    clearTimeout(timers.play);
  }

  async function tick() {
    if (!state.playing) return;
    const e = entry();
    const started = performance.now();
    state.index = e.first + ((e.frame + 1) % e.frames);
    state.direction = 1;
    update();
    await show();
    if (!state.playing) return;
    const wait = Math.max(0, 1000 / fps - (performance.now() - started));
    timers.play = setTimeout(tick, wait);
  }

  // ---- actions (buttons, keys, mouse) -----------------------------------------------------

  const actions = {
    step(delta) {
      actions.goto(state.index + delta);
    },
    goto(i) {
      if (!stack) return;
      const next = Math.max(0, Math.min(stack.entries.length - 1, i === Infinity ? stack.entries.length - 1 : i));
      if (next === state.index) return;
      state.direction = next > state.index ? 1 : -1;
      state.index = next;
      update();
    },
    dragStart(mode) {
      if (mode === 'window') { windowing = true; dragWidth = state.win ? Math.max(1, state.win.width) : 256; }
    },
    dragEnd(mode) {
      if (mode === 'window') { windowing = false; showWindowed(); }
    },
    window(dx, dy) {
      if (!state.win) return;
      const k = Math.max(dragWidth / 400, 0.01);
      state.win = { width: Math.max(1, state.win.width + dx * k), center: state.win.center + dy * k };
      if (shownWin && entry() && shownUrl === urlOf(state.index, shownWin)) {
        slice.style.filter = preview.set(shownWin, state.win);
      }
      update({ windowed: true });
    },
    pan(dx, dy) {
      state.panX += dx;
      state.panY += dy;
      layout();
    },
    zoomAt(factor, x, y) {
      const zoom = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, state.zoom * factor));
      const k = zoom / state.zoom;
      state.panX = x - (x - state.panX) * k;
      state.panY = y - (y - state.panY) * k;
      state.zoom = zoom;
      layout();
    },
    reset() {
      Object.assign(state, { zoom: 1, panX: 0, panY: 0 });
      if (state.base) state.win = { ...state.base };
      layout();
      update();
    },
    preset(key) {
      const p = PRESETS[key];
      const w = p.width ? p : state.base;
      if (!w) return;
      state.win = { center: w.center, width: w.width };
      update();
    },
    togglePan() {
      state.panTool = !state.panTool;
      panButton.setAttribute('aria-pressed', String(state.panTool));
      viewport.classList.toggle('pan-tool', state.panTool);
    },
    panTool: () => state.panTool,
    async togglePlay() {
      if (!stack || entry().frames < 2) return;
      if (state.playing) { stopPlay(); labels(); return; }
      state.playing = true;
      labels();
      const tags = await instanceTags(entry().instance, controller.signal).catch(() => ({}));
      fps = cineRate(tags);
      tick();
    },
    help() {
      help.togglePopover?.();
    },
  };

  slider.addEventListener('input', () => actions.goto(parseInt(slider.value, 10)));
  const resize = new ResizeObserver(() => layout());
  resize.observe(viewport);

  // ---- loading -----------------------------------------------------------------------------

  (async () => {
    try {
      stack = await loadStack(seriesId, controller.signal);
    } catch (error) {
      if (error.name === 'AbortError') return;
      title.replaceChildren(h('strong', {}, 'Series not available'));
      viewport.classList.add('has-error');
      status.textContent = error.status === 404 ? 'This series does not exist (it may have been deleted).' : error.message;
      reportError('Could not load the series', error);
      return;
    }
    const { series, study, entries } = stack;
    if (!entries.length) {
      viewport.classList.add('has-error');
      status.textContent = 'This series has no images.';
      return;
    }
    state.index = Math.min(state.index, entries.length - 1);
    const p = study.PatientMainDicomTags || {};
    const st = study.MainDicomTags || {};
    const se = series.MainDicomTags || {};
    setTitle(se.SeriesDescription || 'Viewer', personName(p.PatientName));
    back.href = `/ui/studies/${study.ID}`;
    title.replaceChildren(
      h('strong', {}, se.SeriesDescription || 'Series'),
      h('span', { class: 'muted' }, `${personName(p.PatientName)} · ${st.StudyDescription || ''}`));
    corners.tl.replaceChildren(
      h('span', { class: 'strong' }, personName(p.PatientName)), h('span', {}, p.PatientID || ''),
      h('span', {}, [dicomDate(p.PatientBirthDate), p.PatientSex].filter(Boolean).join(' · ')));
    corners.tr.replaceChildren(
      h('span', { class: 'strong' }, st.StudyDescription || ''),
      h('span', {}, [dicomDate(st.StudyDate), dicomTime(st.StudyTime)].filter(Boolean).join(' ')),
      h('span', {}, st.InstitutionName || ''));
    corners.bl.replaceChildren(
      h('span', { class: 'strong' }, [se.Modality, se.SeriesNumber && `Se ${se.SeriesNumber}`, se.SeriesDescription].filter(Boolean).join(' · ')),
      h('span', {}, 'Image ', sliceLabel), numberLabel, frameLabel);
    corners.br.replaceChildren(wlLabel, zoomLabel);
    fillStrip(stripList, study.ID, seriesId, controller.signal).catch(() => { strip.hidden = true; });
    slider.max = String(entries.length - 1);
    slider.disabled = entries.length < 2;

    const tags = await instanceTags(entry().instance, controller.signal).catch(() => ({}));
    state.base = defaultWindow(tags, se.Modality);
    state.win = { ...state.base };
    fps = cineRate(tags);
    unbind = bindInput(viewport, actions);
    update();
    viewport.focus({ preventScroll: true });
  })();

  return {
    unmount() {
      controller.abort();
      stopPlay();
      Object.values(timers).forEach(clearTimeout);
      resize.disconnect();
      unbind();
      cache.clear();
    },
  };
}
