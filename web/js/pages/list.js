// /ui/: the study list. The query string holds the search (?name=DOE*&from=20200101&page=2),
// so reload, back and forward show the same list. Paged on the server, 50 a page.

import { get, post, session } from '../api.js';
import { navigate } from '../router.js';
import { h, icon, reportError, clearError, setTitle } from '../ui.js';
import { personName, dicomDate, toInputDate, fromInputDate, plural } from '../format.js';
import { createUploader } from '../upload.js';

const PAGE_SIZE = 50;
const MODALITIES = ['CT', 'MR', 'CR', 'DX', 'US', 'XA', 'RF', 'MG', 'NM', 'PT', 'OT', 'SR'];
const FIELDS = ['name', 'accession', 'description', 'from', 'to', 'modality'];

/** The search the URL holds (`patient=` is accepted for `name=`). */
function searchOf(query) {
  const s = {};
  for (const key of FIELDS) s[key] = (query.get(key) || '').trim();
  if (!s.name) s.name = (query.get('patient') || '').trim();
  s.sort = query.get('sort') === 'asc' ? 'asc' : 'desc';
  s.page = Math.max(1, parseInt(query.get('page'), 10) || 1);
  return s;
}

function urlOf(s) {
  const q = new URLSearchParams();
  for (const key of FIELDS) if (s[key]) q.set(key, s[key]);
  if (s.sort === 'asc') q.set('sort', 'asc');
  if (s.page > 1) q.set('page', String(s.page));
  const qs = q.toString();
  return `/ui/${qs ? `?${qs}` : ''}`;
}

/** A value typed without wildcards matches as a substring (or prefix for identifiers). */
function wildcard(value, prefixOnly = false) {
  if (/[*?]/.test(value)) return value;
  return prefixOnly ? `${value}*` : `*${value}*`;
}

function findBody(s, patientKey) {
  const query = {};
  if (s.name) query[patientKey] = wildcard(s.name, patientKey === 'PatientID');
  if (s.accession) query.AccessionNumber = wildcard(s.accession, true);
  if (s.description) query.StudyDescription = wildcard(s.description);
  if (s.from || s.to) query.StudyDate = `${s.from}-${s.to}`;
  if (s.modality) query.ModalitiesInStudy = s.modality;
  return {
    Level: 'Study',
    Query: query,
    Expand: true,
    Limit: PAGE_SIZE + 1,
    Since: (s.page - 1) * PAGE_SIZE,
    OrderBy: [{ Type: 'DicomTag', Key: 'StudyDate', Direction: s.sort === 'asc' ? 'ASC' : 'DESC' }],
    RequestedTags: ['NumberOfStudyRelatedSeries', 'NumberOfStudyRelatedInstances', 'ModalitiesInStudy'],
  };
}

/** One field searches patient names and IDs: an ID-looking value is tried as an ID first. */
async function findStudies(s, signal) {
  if (!s.name) return post('/tools/find', findBody(s, 'PatientName'), { signal });
  const keys = /\d/.test(s.name) ? ['PatientID', 'PatientName'] : ['PatientName', 'PatientID'];
  const first = await post('/tools/find', findBody(s, keys[0]), { signal });
  if (first.length) return first;
  return post('/tools/find', findBody(s, keys[1]), { signal });
}

function textField(name, label, value, attrs = {}) {
  const id = `search-${name}`;
  return h('div', { class: `field field-${name}` },
    h('label', { for: id }, label),
    h('input', { id, name, value, autocomplete: 'off', spellcheck: 'false', ...attrs }));
}

function searchForm(s, onSearch) {
  const modality = h('select', { id: 'search-modality', name: 'modality' },
    h('option', { value: '' }, 'Any'),
    MODALITIES.map((m) => h('option', { value: m, selected: s.modality === m }, m)));
  const form = h('form', { id: 'search', class: 'search', role: 'search' },
    textField('patient', 'Patient name or ID', s.name, { placeholder: 'e.g. DOE* or P0001', type: 'search', 'aria-keyshortcuts': '/' }),
    textField('accession', 'Accession', s.accession, { type: 'search' }),
    textField('description', 'Description', s.description, { type: 'search' }),
    textField('from', 'From', toInputDate(s.from), { type: 'date' }),
    textField('to', 'To', toInputDate(s.to), { type: 'date' }),
    h('div', { class: 'field field-modality' }, h('label', { for: 'search-modality' }, 'Modality'), modality),
    h('div', { class: 'search-actions' },
      h('button', { type: 'submit', class: 'btn btn-primary' }, icon('search'), 'Search'),
      h('button', { type: 'button', class: 'btn btn-ghost', onclick: () => { form.reset(); clearFields(form); onSearch(form); } }, 'Clear')));
  form.addEventListener('submit', (event) => { event.preventDefault(); onSearch(form); });
  return form;
}

function clearFields(form) {
  for (const el of form.elements) if (el.name) el.value = '';
}

function formSearch(form, sort) {
  const v = (name) => form.elements[name].value.trim();
  return {
    name: v('patient'), accession: v('accession'), description: v('description'),
    from: fromInputDate(v('from')), to: fromInputDate(v('to')), modality: v('modality'),
    sort, page: 1,
  };
}

function studyRow(study) {
  const p = study.PatientMainDicomTags || {};
  const t = study.MainDicomTags || {};
  const r = study.RequestedTags || {};
  const modalities = String(r.ModalitiesInStudy || '').split('\\').filter(Boolean);
  const open = () => navigate(`/ui/studies/${study.ID}`);
  return h('tr', {
    tabindex: 0, 'data-id': study.ID, class: 'row-link',
    'aria-label': `${personName(p.PatientName) || 'Unnamed patient'}, ${t.StudyDescription || 'study'} of ${dicomDate(t.StudyDate) || 'unknown date'}`,
    onclick: open,
    onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(); } },
  },
  h('td', { class: 'col-name' }, h('span', { class: 'patient-name' }, personName(p.PatientName) || '—')),
  h('td', { class: 'col-id mono' }, p.PatientID || ''),
  h('td', { class: 'col-birth' }, dicomDate(p.PatientBirthDate)),
  h('td', { class: 'col-date' }, dicomDate(t.StudyDate)),
  h('td', { class: 'col-desc' }, t.StudyDescription || h('span', { class: 'muted' }, 'No description')),
  h('td', { class: 'col-mod' }, modalities.map((m) => h('span', { class: `chip chip-${m.toLowerCase()}` }, m))),
  h('td', { class: 'col-num' }, r.NumberOfStudyRelatedSeries ?? ''),
  h('td', { class: 'col-num' }, r.NumberOfStudyRelatedInstances ?? ''));
}

export function mount(main, { query }) {
  let s = searchOf(query);
  let controller = null;
  let failed = false;   // the last load put its error in #error
  setTitle('Studies');

  const count = h('p', { id: 'result-count', class: 'result-count', 'aria-live': 'polite' });
  const sortButton = h('button', { type: 'button', id: 'sort-date', class: 'th-sort' });
  const dateHeader = h('th', { scope: 'col', class: 'col-date' }, sortButton);
  const tbody = h('tbody');
  const table = h('table', { id: 'studies', class: 'data-table' },
    h('caption', { class: 'visually-hidden' }, 'Studies; select a row to open the study'),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col', class: 'col-name' }, 'Patient name'),
      h('th', { scope: 'col', class: 'col-id' }, 'Patient ID'),
      h('th', { scope: 'col', class: 'col-birth' }, 'Birth date'),
      dateHeader,
      h('th', { scope: 'col', class: 'col-desc' }, 'Description'),
      h('th', { scope: 'col', class: 'col-mod' }, 'Modalities'),
      h('th', { scope: 'col', class: 'col-num' }, 'Series'),
      h('th', { scope: 'col', class: 'col-num' }, 'Instances'))),
    tbody);
  const prev = h('button', { type: 'button', id: 'prev', class: 'btn btn-sm' }, '‹ Previous');
  const next = h('button', { type: 'button', id: 'next', class: 'btn btn-sm' }, 'Next ›');
  const pageLabel = h('span', { class: 'page-label' });
  const empty = h('div', { class: 'empty-state', hidden: true });

  const go = (changes) => navigate(urlOf({ ...s, ...changes }));
  const form = searchForm(s, (f) => navigate(urlOf(formSearch(f, s.sort))));
  sortButton.addEventListener('click', () => go({ sort: s.sort === 'desc' ? 'asc' : 'desc', page: 1 }));
  prev.addEventListener('click', () => go({ page: s.page - 1 }));
  next.addEventListener('click', () => go({ page: s.page + 1 }));

  const uploader = session.isAdmin ? createUploader({ onDone: () => load() }) : null;

  main.append(h('section', { class: 'page page-list' },
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Studies'), count),
      uploader && h('div', { class: 'page-actions' }, uploader.buttons)),
    form,
    uploader && uploader.panel,
    h('div', { class: 'table-wrap' }, table, empty),
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, prev, pageLabel, next)));

  function showSort() {
    const asc = s.sort === 'asc';
    sortButton.replaceChildren('Study date ', h('span', { class: 'sort-arrow', 'aria-hidden': 'true' }, asc ? '▲' : '▼'));
    sortButton.setAttribute('aria-label', `Study date, sorted ${asc ? 'oldest' : 'newest'} first; change order`);
    dateHeader.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
  }

  function filtered() {
    return FIELDS.some((k) => s[k]);
  }

  async function load() {
    controller?.abort();
    controller = new AbortController();
    const mine = controller;
    showSort();
    table.setAttribute('aria-busy', 'true');
    main.querySelector('.table-wrap').classList.add('is-loading');
    try {
      // Without a filter the total is known from the statistics, for "51–100 of 730".
      const [studies, total] = await Promise.all([
        findStudies(s, mine.signal),
        filtered() ? null : get('/statistics', { signal: mine.signal }).then((st) => st.CountStudies, () => null),
      ]);
      if (mine !== controller) return;
      if (failed) clearError();
      failed = false;
      const more = studies.length > PAGE_SIZE;
      const shown = studies.slice(0, PAGE_SIZE);
      tbody.replaceChildren(...shown.map(studyRow));
      const first = (s.page - 1) * PAGE_SIZE;
      if (!shown.length) count.textContent = s.page > 1 ? 'No more studies' : 'No studies';
      else if (s.page === 1 && !more) count.textContent = plural(shown.length, 'study', 'studies');
      else {
        const of = more ? total : first + shown.length;
        count.textContent = `Studies ${first + 1}–${first + shown.length}${of ? ` of ${of}` : ''}`;
      }
      const focused = document.activeElement;
      prev.disabled = s.page <= 1;
      next.disabled = !more;
      // Keyboard users paging to the end keep their place on the pager.
      if (focused === next && next.disabled) prev.focus();
      if (focused === prev && prev.disabled && !next.disabled) next.focus();
      pageLabel.textContent = `Page ${s.page}`;
      renderEmpty(shown.length === 0);
    } catch (error) {
      if (error.name === 'AbortError') return;
      tbody.replaceChildren();
      count.textContent = '';
      failed = true;
      reportError('Could not load the studies', error);
    } finally {
      if (mine === controller) {
        table.removeAttribute('aria-busy');
        main.querySelector('.table-wrap')?.classList.remove('is-loading');
      }
    }
  }

  function renderEmpty(isEmpty) {
    empty.hidden = !isEmpty;
    table.hidden = isEmpty && s.page === 1;
    if (!isEmpty) return;
    empty.replaceChildren(
      icon('series', 40),
      h('h2', {}, filtered() ? 'No study matches this search' : 'No studies yet'),
      h('p', { class: 'muted' }, filtered()
        ? 'Try fewer criteria, or a wildcard such as DOE*.'
        : session.isAdmin
          ? 'Send studies over DICOM, or drop DICOM files or folders here to upload them.'
          : 'Studies appear here once they are sent to this server.'));
  }

  // "/" jumps to the search, as in most web applications.
  const onSlash = (e) => {
    if (e.key !== '/' || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target.closest && e.target.closest('input, select, textarea')) return;
    e.preventDefault();
    form.elements.patient.focus();
  };
  document.addEventListener('keydown', onSlash);

  load();
  return {
    update(newQuery) {
      s = searchOf(newQuery);
      for (const [field, value] of [['patient', s.name], ['accession', s.accession], ['description', s.description],
        ['from', toInputDate(s.from)], ['to', toInputDate(s.to)], ['modality', s.modality]]) {
        form.elements[field].value = value;
      }
      load();
    },
    unmount() {
      document.removeEventListener('keydown', onSlash);
      controller?.abort();
      uploader?.destroy();
    },
  };
}
