// /ui/remote: query another DICOM node (an old PACS, a modality's archive) for studies and
// retrieve the ones picked into this server. Admins only (the server enforces it too).

import { get, post, session } from '../api.js';
import { h, icon, loading, reportError, setTitle } from '../ui.js';
import { personName, dicomDate } from '../format.js';
import { follow } from '../transfer.js';

function field(id, label, attrs = {}) {
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('input', { id, name: id, type: 'text', autocomplete: 'off', ...attrs }));
}

export function mount(main) {
  setTitle('Query / Retrieve');
  const page = h('section', { class: 'page page-remote' }, h('h1', {}, 'Query and retrieve'));
  main.append(page);
  if (!session.isAdmin) {
    page.append(h('p', { class: 'muted' }, 'Only administrators may query other DICOM nodes.'));
    return {};
  }
  const peer = h('select', { id: 'remote-peer', required: true });
  const form = h('form', { class: 'card remote-form' },
    h('div', { class: 'field' }, h('label', { for: 'remote-peer' }, 'Peer'), peer),
    field('remote-name', 'Patient name', { placeholder: 'SMITH*' }),
    field('remote-id', 'Patient ID'),
    field('remote-accession', 'Accession'),
    field('remote-date', 'Study date', { placeholder: '20240101-20241231' }),
    h('button', { type: 'submit', class: 'btn btn-primary', id: 'remote-search' }, icon('search', 16), 'Search'));
  const results = h('div', { class: 'remote-results' });
  page.append(form, results);

  get('/modalities?expand').then((all) => {
    const names = Object.entries(all).filter(([, m]) => m.Host && m.Port).map(([name, m]) =>
      h('option', { value: name, title: `${m.AET}@${m.Host}:${m.Port}` }, `${name} (${m.AET})`));
    if (!names.length) {
      results.replaceChildren(h('p', { class: 'muted' }, 'No DICOM peer with a host and port is configured.'));
    }
    peer.replaceChildren(...names);
  }).catch((error) => reportError('Could not list the DICOM peers', error));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const query = {};
    const value = (id) => document.getElementById(id).value.trim();
    if (value('remote-name')) query.PatientName = value('remote-name');
    if (value('remote-id')) query.PatientID = value('remote-id');
    if (value('remote-accession')) query.AccessionNumber = value('remote-accession');
    if (value('remote-date')) query.StudyDate = value('remote-date');
    results.replaceChildren(loading(`Asking ${peer.value}…`));
    try {
      const asked = await post(`/modalities/${encodeURIComponent(peer.value)}/query`, { Level: 'Study', Query: query });
      const answers = await get(`/queries/${asked.ID}/answers?expand`);
      showAnswers(asked.ID, answers);
    } catch (error) {
      results.replaceChildren(h('p', { class: 'muted' }, 'The query failed.'));
      reportError('Could not query the peer', error);
    }
  });

  function showAnswers(queryId, answers) {
    if (!answers.length) {
      results.replaceChildren(h('p', { class: 'muted', id: 'remote-none' }, 'No study matches.'));
      return;
    }
    const rows = answers.map((a, index) => {
      const box = h('input', { type: 'checkbox', class: 'pick', value: String(index), 'aria-label': `Pick study ${index + 1}` });
      const state = h('td', { class: 'retrieve-state muted' });
      return {
        box, state,
        row: h('tr', { 'data-uid': a.StudyInstanceUID || '' },
          h('td', {}, box),
          h('td', {}, personName(a.PatientName) || '—'),
          h('td', { class: 'mono' }, a.PatientID || ''),
          h('td', {}, dicomDate(a.StudyDate) || ''),
          h('td', {}, a.StudyDescription || ''),
          h('td', {}, a.ModalitiesInStudy || ''),
          h('td', { class: 'mono' }, a.AccessionNumber || ''),
          state),
      };
    });
    const retrieve = h('button', { type: 'button', class: 'btn btn-primary', id: 'remote-retrieve' }, icon('download', 16), 'Retrieve selected');
    retrieve.addEventListener('click', async () => {
      const picked = rows.filter((r) => r.box.checked);
      if (!picked.length) return;
      retrieve.disabled = true;
      for (const r of picked) {
        r.state.textContent = 'Retrieving…';
        try {
          const started = await post(`/queries/${queryId}/answers/${r.box.value}/retrieve`, { Asynchronous: true });
          const job = await follow(started.ID, (j) => { r.state.textContent = `Retrieving… ${j.Progress}%`; });
          const c = job.Content || {};
          r.state.textContent = job.State === 'Success'
            ? `Retrieved (${c.CompletedSubOperations} instances)`
            : `Failed: ${job.ErrorDetails || ''}`;
          r.state.className = `retrieve-state ${job.State === 'Success' ? 'ok' : 'error'}`;
        } catch (error) {
          r.state.textContent = 'Failed';
          reportError('Could not retrieve', error);
        }
      }
      retrieve.disabled = false;
    });
    results.replaceChildren(
      h('div', { class: 'section-head' }, h('h2', {}, `${answers.length} ${answers.length === 1 ? 'study' : 'studies'}`), retrieve),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'data-table remote-table' },
          h('thead', {}, h('tr', {}, ['', 'Patient', 'ID', 'Date', 'Description', 'Modalities', 'Accession', 'Status'].map((t) => h('th', {}, t)))),
          h('tbody', {}, rows.map((r) => r.row)))));
  }
  return {};
}
