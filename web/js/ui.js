// Small DOM helpers shared by every page: an element builder, icons, the global error
// region, a short notice, the confirmation dialog.

const SVG = 'http://www.w3.org/2000/svg';

/** Builds an element: h('a', {href, class: 'x', onclick}, 'text', child, [more]). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== 'string') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : value);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

const ICONS = {
  search: 'M11 4a7 7 0 1 0 4.2 12.6l4.1 4.1 1.4-1.4-4.1-4.1A7 7 0 0 0 11 4zm0 2a5 5 0 1 1 0 10 5 5 0 0 1 0-10z',
  upload: 'M12 3l5 5-1.4 1.4L13 6.8V16h-2V6.8L8.4 9.4 7 8zM5 18h14v2H5z',
  download: 'M11 4h2v9.2l2.6-2.6L17 12l-5 5-5-5 1.4-1.4 2.6 2.6zM5 18h14v2H5z',
  trash: 'M9 3h6l1 2h4v2H4V5h4zm-3 5h12l-1 13H7zm4 2v9h1.5v-9zm3.5 0v9H15v-9z',
  zoomIn: 'M10 3a7 7 0 1 0 4.2 12.6l4.1 4.1 1.4-1.4-4.1-4.1A7 7 0 0 0 10 3zm0 2a5 5 0 1 1 0 10 5 5 0 0 1 0-10zM9 7h2v2h2v2h-2v2H9v-2H7V9h2z',
  zoomOut: 'M10 3a7 7 0 1 0 4.2 12.6l4.1 4.1 1.4-1.4-4.1-4.1A7 7 0 0 0 10 3zm0 2a5 5 0 1 1 0 10 5 5 0 0 1 0-10zM7 9h6v2H7z',
  reset: 'M12 5V2L7 6l5 4V7a5 5 0 1 1-5 5H5a7 7 0 1 0 7-7z',
  pan: 'M12 2l3 3h-2v6h6V9l3 3-3 3v-2h-6v6h2l-3 3-3-3h2v-6H5v2l-3-3 3-3v2h6V5H9z',
  contrast: 'M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18zm0 2v14a7 7 0 0 1 0-14z',
  play: 'M8 5v14l11-7z',
  pause: 'M7 5h4v14H7zm6 0h4v14h-4z',
  help: 'M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm0 15.5a1.3 1.3 0 1 1 0-2.6 1.3 1.3 0 0 1 0 2.6zm1.2-4.6v.6h-2.3v-1c0-1.2.8-1.8 1.5-2.3.6-.4 1-.7 1-1.3 0-.7-.6-1.2-1.4-1.2-.9 0-1.5.6-1.6 1.4L8.1 9C8.4 7.2 9.9 6 12 6c2.2 0 3.7 1.3 3.7 3 0 1.4-.9 2.1-1.6 2.6-.5.4-.9.6-.9 1.3z',
  back: 'M15.4 5.4L14 4l-8 8 8 8 1.4-1.4L8.8 12z',
  series: 'M4 4h12v12H4zm2 2v8h8V6zm12 2h2v12H8v-2h10z',
  file: 'M6 2h8l6 6v14H6zm7 1.5V9h5.5z',
  tags: 'M3 5h18v2H3zm0 6h18v2H3zm0 6h12v2H3z',
  close: 'M6.4 5L12 10.6 17.6 5 19 6.4 13.4 12 19 17.6 17.6 19 12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z',
  image: 'M4 5h16v14H4zm2 2v8.6l3.5-3.5 2.5 2.5 4-4 2 2V7zm3 1.5a1.5 1.5 0 1 1 0 3 1.5 1.5 0 0 1 0-3z',
  user: 'M12 3a4.5 4.5 0 1 1 0 9 4.5 4.5 0 0 1 0-9zm0 11c4.4 0 8 2 8 4.5V21H4v-2.5C4 16 7.6 14 12 14z',
};

/** An inline SVG icon (decorative: hidden from screen readers). */
export function icon(name, size = 18) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', size);
  svg.setAttribute('height', size);
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', ICONS[name] || '');
  path.setAttribute('fill', 'currentColor');
  svg.append(path);
  return svg;
}

/** Shows a message in the global alert region (#error). */
export function showError(error) {
  const box = document.getElementById('error');
  const text = document.getElementById('error-text');
  text.textContent = typeof error === 'string' ? error : messageOf(error);
  box.hidden = false;
}

/**
 * Shows why something failed, prefixed with what failed; says nothing for a cancelled
 * request or an ended session (the sign-in page takes over then).
 */
export function reportError(what, error) {
  if (!error || error.name === 'AbortError' || error.status === 401) return;
  showError(`${what}: ${messageOf(error)}`);
}

export function clearError() {
  const box = document.getElementById('error');
  document.getElementById('error-text').textContent = '';
  box.hidden = true;
}

export function messageOf(error) {
  if (!error) return 'Something went wrong.';
  return error.message || String(error);
}

let noticeTimer = 0;
/** A short confirmation ("Study deleted") that fades away by itself. */
export function notice(text) {
  const box = document.getElementById('notice');
  box.textContent = text;
  box.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { box.hidden = true; }, 4000);
}

/** Asks a yes/no question in dialog#confirm; resolves true when confirmed. */
export function confirmDialog({ title, text, confirm = 'Delete' }) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-yes').textContent = confirm;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true });
    dialog.showModal();
    document.getElementById('confirm-no').focus();
  });
}

/** A page-level loading placeholder. */
export function loading(text = 'Loading…') {
  return h('div', { class: 'loading', role: 'status' }, h('span', { class: 'spinner' }), text);
}

/** Sets the document title from a page name. */
export function setTitle(...parts) {
  document.title = [...parts.filter(Boolean), 'Orthweb'].join(' · ');
}
