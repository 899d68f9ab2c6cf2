// Sending to DICOM peers: the "Send to…" dialog (pick a peer, watch the job's progress) and
// following a job until it ends.

import { get, post } from './api.js';
import { h, icon, reportError } from './ui.js';

/** The peers we can send to (with a host and port), as [{name, aet, host, port}]. */
export async function destinations(signal) {
  const all = await get('/modalities?expand', { signal });
  return Object.entries(all)
    .filter(([, m]) => m.Host && m.Port)
    .map(([name, m]) => ({ name, aet: m.AET, host: m.Host, port: m.Port }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** Polls /jobs/{id} until it ends; `onProgress(job)` sees each state. Answers the last. */
export async function follow(jobId, onProgress, { every = 400 } = {}) {
  for (;;) {
    const job = await get(`/jobs/${jobId}`);
    onProgress(job);
    if (job.State === 'Success' || job.State === 'Failure') return job;
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}

/** Opens the "Send to…" dialog for a resource (a study or a series) described by `label`. */
export async function sendDialog(resourceId, label) {
  const select = h('select', { id: 'send-peer', required: true });
  const status = h('p', { class: 'send-status muted', role: 'status' });
  const bar = h('progress', { max: 100, value: 0, hidden: true });
  const sendBtn = h('button', { type: 'submit', class: 'btn btn-primary', id: 'send-go' }, icon('upload', 16), 'Send');
  const closeBtn = h('button', { type: 'button', class: 'btn', id: 'send-close' }, 'Close');
  const form = h('form', { class: 'dialog-body' },
    h('h2', {}, `Send ${label}`),
    h('label', { for: 'send-peer' }, 'To'),
    select, bar, status,
    h('div', { class: 'dialog-actions' }, closeBtn, sendBtn));
  const dialog = h('dialog', { id: 'send-dialog', 'aria-label': `Send ${label}` }, form);
  document.body.append(dialog);
  closeBtn.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => dialog.remove());
  dialog.showModal();
  try {
    const peers = await destinations();
    if (!peers.length) {
      status.textContent = 'No DICOM peer to send to: add one (with a host and port) in the settings or with PUT /modalities/{name}.';
      sendBtn.disabled = true;
      return;
    }
    select.replaceChildren(...peers.map((p) =>
      h('option', { value: p.name }, `${p.name} — ${p.aet}@${p.host}:${p.port}`)));
  } catch (error) {
    status.textContent = 'The peers could not be listed.';
    reportError('Could not list the DICOM peers', error);
    return;
  }
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const peer = select.value;
    sendBtn.disabled = true;
    select.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    status.textContent = `Sending to ${peer}…`;
    try {
      const started = await post(`/modalities/${encodeURIComponent(peer)}/store`,
        { Resources: [resourceId], Asynchronous: true });
      const job = await follow(started.ID, (j) => {
        bar.value = j.Progress;
        const c = j.Content || {};
        if (c.InstancesCount !== undefined) {
          status.textContent = `Sending to ${peer}: ${c.InstancesCount} sent${c.FailedInstancesCount ? `, ${c.FailedInstancesCount} failed` : ''}…`;
        }
      });
      const c = job.Content || {};
      if (job.State === 'Success') {
        bar.value = 100;
        status.textContent = `Sent ${c.InstancesCount} instances to ${peer}.`;
        status.className = 'send-status ok';
      } else {
        status.textContent = `Not all sent to ${peer}: ${job.ErrorDetails || 'the job failed'}.`;
        status.className = 'send-status error';
      }
    } catch (error) {
      status.textContent = 'The transfer could not start.';
      status.className = 'send-status error';
      reportError('Could not send', error);
    } finally {
      sendBtn.disabled = false;
      select.disabled = false;
    }
  });
}
