// Uploading DICOM files (admin only): a file input, a folder input, and drag and drop of
// files or folders anywhere on the page. Three at a time over XHR (for upload progress),
// with an overall progress bar and one result line per file.

import { writeHeaders, describeStatus } from './api.js';
import { h, icon, showError } from './ui.js';
import { bytes, plural } from './format.js';

const PARALLEL = 3;

/** Skips what is never an instance: hidden files and DICOMDIR indexes. */
function wanted(file) {
  const name = file.name || '';
  return !name.startsWith('.') && name.toUpperCase() !== 'DICOMDIR' && !/\.(txt|md|html?|xml|json|ini|exe|inf)$/i.test(name);
}

/** Every file of a drop, walking dropped folders. */
async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items || []]
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
    .filter(Boolean);
  if (!entries.length) return [...dataTransfer.files];
  const files = [];
  async function walk(entry, path) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      files.push(Object.assign(file, { relativePath: path + file.name }));
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${path}${entry.name}/`);
      }
    }
  }
  for (const entry of entries) await walk(entry, '');
  return files;
}

/** Sends one file; resolves {status: 'Success'|'AlreadyStored'|'error', text}. */
function send(file, onProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/instances');
    const zip = /\.zip$/i.test(file.name) || file.type === 'application/zip';
    const headers = writeHeaders({ 'Content-Type': zip ? 'application/zip' : 'application/dicom', Accept: 'application/json' });
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.addEventListener('progress', (e) => onProgress(e.loaded));
    xhr.addEventListener('load', () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300 && data) {
        resolve(Array.isArray(data) ? zipResult(data) : {
          status: data.Status === 'AlreadyStored' ? 'AlreadyStored' : 'Success',
          text: data.Status === 'AlreadyStored' ? 'Already stored' : 'Stored',
          study: data.ParentStudy,
        });
      } else {
        const text = (data && data.Message) || describeStatus(xhr.status);
        const message = text.charAt(0).toUpperCase() + text.slice(1);
        resolve({ status: 'error', text: xhr.status === 401 ? 'Your session has ended: sign in again.' : message });
      }
    });
    xhr.addEventListener('error', () => resolve({ status: 'error', text: 'The connection to the server failed.' }));
    xhr.addEventListener('abort', () => resolve({ status: 'error', text: 'Cancelled.' }));
    xhr.send(file);
  });
}

/** The answer to a ZIP: one line for the whole archive. */
function zipResult(items) {
  const stored = items.filter((i) => i.Status === 'Success').length;
  const already = items.filter((i) => i.Status === 'AlreadyStored').length;
  const failed = items.filter((i) => i.Status !== 'Success' && i.Status !== 'AlreadyStored');
  const parts = [];
  if (stored) parts.push(`${stored} stored`);
  if (already) parts.push(`${already} already stored`);
  if (failed.length) parts.push(`${failed.length} failed (${failed[0].Name || ''}: ${failed[0].Message || 'error'})`);
  const status = failed.length ? 'error' : stored ? 'Success' : 'AlreadyStored';
  return { status, text: parts.join(', ') || 'Empty archive' };
}

export function createUploader({ onDone }) {
  const input = h('input', { type: 'file', id: 'upload-input', class: 'visually-hidden admin-only', multiple: true, tabindex: -1, 'aria-hidden': 'true' });
  const folderInput = h('input', { type: 'file', id: 'upload-folder-input', class: 'visually-hidden admin-only', multiple: true, tabindex: -1, 'aria-hidden': 'true' });
  folderInput.webkitdirectory = true;
  const buttons = h('div', { class: 'btn-group admin-only' },
    h('button', { type: 'button', id: 'upload', class: 'btn btn-primary admin-only', onclick: () => input.click() }, icon('upload'), 'Upload files'),
    h('button', { type: 'button', id: 'upload-folder', class: 'btn admin-only', onclick: () => folderInput.click() }, 'Folder…'),
    input, folderInput);

  const progress = h('progress', { id: 'upload-progress', max: 1, value: 0 });
  const title = h('h2', { class: 'upload-title' }, 'Upload');
  const summary = h('p', { class: 'upload-summary muted', 'aria-live': 'polite' });
  const results = h('ul', { id: 'upload-results', class: 'upload-results' });
  const close = h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close the upload panel', onclick: () => { panel.hidden = true; } }, icon('close'));
  const panel = h('section', { class: 'upload-panel admin-only', 'aria-label': 'Upload', hidden: true },
    h('div', { class: 'upload-head' }, title, close), progress, summary, results);
  const overlay = h('div', { class: 'drop-overlay', hidden: true },
    h('div', { class: 'drop-box' }, icon('upload', 48), h('p', {}, 'Drop DICOM files or folders to upload')));
  document.body.append(overlay);

  // One batch at a time; files chosen while it runs join it.
  let batch = null;

  function newBatch() {
    return {
      files: [], started: 0, done: 0, total: 0, finished: 0,
      inFlight: new Map(),     // file → bytes sent so far
      counts: { Success: 0, AlreadyStored: 0, error: 0 },
    };
  }

  function render(b, running) {
    const sent = b.finished + [...b.inFlight.values()].reduce((a, n) => a + n, 0);
    progress.max = Math.max(1, b.total);
    progress.value = running ? Math.min(sent, b.total) : progress.max;
    const { Success, AlreadyStored, error } = b.counts;
    title.textContent = running ? `Uploading ${Math.min(b.done + 1, b.files.length)} of ${b.files.length}` : 'Upload finished';
    summary.textContent = running
      ? `${bytes(sent)} of ${bytes(b.total)} · ${Success} stored, ${AlreadyStored} already stored, ${error} failed`
      : `${plural(b.files.length, 'file')}: ${Success} stored, ${AlreadyStored} already stored, ${error} failed`;
  }

  async function worker(b) {
    while (b.started < b.files.length) {
      const file = b.files[b.started];
      b.started += 1;
      b.inFlight.set(file, 0);
      const result = await send(file, (n) => { b.inFlight.set(file, n); render(b, true); });
      b.inFlight.delete(file);
      b.finished += file.size;
      b.counts[result.status] += 1;
      b.done += 1;
      results.prepend(h('li', { 'data-status': result.status, class: `result result-${result.status.toLowerCase()}` },
        result.study
          ? h('a', { class: 'result-name', href: `/ui/studies/${result.study}`, title: 'Open the study' }, file.relativePath || file.webkitRelativePath || file.name)
          : h('span', { class: 'result-name' }, file.relativePath || file.webkitRelativePath || file.name),
        h('span', { class: 'result-text' }, result.text)));
      render(b, true);
    }
  }

  async function upload(files) {
    const list = files.filter(wanted);
    if (!list.length) {
      showError('Nothing to upload: no DICOM file among what was chosen.');
      return;
    }
    if (batch) {
      batch.files.push(...list);
      batch.total += list.reduce((n, f) => n + f.size, 0);
      return;
    }
    const b = newBatch();
    batch = b;
    b.files.push(...list);
    b.total = list.reduce((n, f) => n + f.size, 0);
    panel.hidden = false;
    results.replaceChildren();
    render(b, true);
    while (b.started < b.files.length) {
      await Promise.all(Array.from({ length: PARALLEL }, () => worker(b)));
    }
    batch = null;
    render(b, false);
    if (b.counts.error) showError(`${plural(b.counts.error, 'file')} could not be uploaded; see the upload list for why.`);
    onDone?.();
  }

  input.addEventListener('change', () => { upload([...input.files]); input.value = ''; });
  folderInput.addEventListener('change', () => { upload([...folderInput.files]); folderInput.value = ''; });

  // Drag and drop anywhere on the page while it is shown.
  let depth = 0;
  const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes('Files');
  const onEnter = (e) => { if (!hasFiles(e)) return; e.preventDefault(); depth += 1; overlay.hidden = false; };
  const onOver = (e) => { if (!hasFiles(e)) return; e.preventDefault(); e.dataTransfer.dropEffect = 'copy'; };
  const onLeave = (e) => { if (!hasFiles(e)) return; depth = Math.max(0, depth - 1); if (!depth) overlay.hidden = true; };
  const onDrop = async (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    try {
      upload(await droppedFiles(e.dataTransfer));
    } catch (error) {
      showError(`Could not read the dropped files: ${error.message}`);
    }
  };
  const target = document;
  target.addEventListener('dragenter', onEnter);
  target.addEventListener('dragover', onOver);
  target.addEventListener('dragleave', onLeave);
  target.addEventListener('drop', onDrop);

  return {
    buttons,
    panel,
    destroy() {
      target.removeEventListener('dragenter', onEnter);
      target.removeEventListener('dragover', onOver);
      target.removeEventListener('dragleave', onLeave);
      target.removeEventListener('drop', onDrop);
      overlay.remove();
    },
  };
}
