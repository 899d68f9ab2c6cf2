// /ui/studies/{id}: the patient and the study, one card per series (thumbnail, counts,
// download, delete, the instance list with files and tags).

import { get, del, session, thumbnailUrl } from '../api.js';
import { navigate } from '../router.js';
import { h, icon, loading, reportError, notice, confirmDialog, setTitle } from '../ui.js';
import { personName, dicomDate, dicomTime, age, bytes, plural } from '../format.js';
import { tagTable } from '../tagtable.js';
import { sendDialog } from '../transfer.js';

const byNumber = (a, b) =>
  (parseFloat(a.MainDicomTags.InstanceNumber) || 0) - (parseFloat(b.MainDicomTags.InstanceNumber) || 0)
  || (a.IndexInSeries || 0) - (b.IndexInSeries || 0);

const seriesOrder = (a, b) =>
  (parseFloat(a.series.MainDicomTags.SeriesNumber) || 0) - (parseFloat(b.series.MainDicomTags.SeriesNumber) || 0);

function detail(label, value) {
  if (!value) return null;
  return h('div', { class: 'detail' }, h('dt', {}, label), h('dd', {}, value));
}

function studyHeader(study, modalities, onDelete, ohif) {
  const p = study.PatientMainDicomTags || {};
  const t = study.MainDicomTags || {};
  const sexAge = [p.PatientSex, age(p.PatientBirthDate, t.StudyDate)].filter(Boolean).join(' · ');
  return h('section', { id: 'study-details', class: 'card study-header' },
    h('div', { class: 'patient' },
      h('div', { class: 'avatar', 'aria-hidden': 'true' }, icon('user', 28)),
      h('div', {},
        h('h1', { class: 'patient-title' }, personName(p.PatientName) || 'Unnamed patient'),
        h('p', { class: 'patient-meta' },
          h('span', { class: 'mono' }, p.PatientID || 'no ID'),
          p.PatientBirthDate && h('span', {}, `born ${dicomDate(p.PatientBirthDate)}`),
          sexAge && h('span', {}, sexAge)))),
    h('div', { class: 'study-info' },
      h('h2', { class: 'study-title' }, t.StudyDescription || 'Study without description'),
      h('dl', { class: 'details' },
        detail('Date', [dicomDate(t.StudyDate), dicomTime(t.StudyTime)].filter(Boolean).join(' ')),
        detail('Accession', t.AccessionNumber),
        detail('Modalities', modalities.join(', ')),
        detail('Study ID', t.StudyID),
        detail('Referring', personName(t.ReferringPhysicianName)),
        detail('Institution', t.InstitutionName))),
    h('div', { class: 'study-actions' },
      h('a', { id: 'download-study', class: 'btn', href: `/studies/${study.ID}/archive`, download: `${t.AccessionNumber || study.ID}.zip` },
        icon('download'), 'Download ZIP'),
      ohif && t.StudyInstanceUID && h('a', {
        id: 'open-ohif', class: 'btn', target: '_blank', rel: 'noopener',
        href: `${ohif}viewer?StudyInstanceUIDs=${encodeURIComponent(t.StudyInstanceUID)}`,
      }, icon('series'), 'Open in OHIF'),
      session.isAdmin && h('button', { type: 'button', id: 'send-study', class: 'btn admin-only', onclick: () => sendDialog(study.ID, 'this study') },
        icon('upload'), 'Send to…'),
      session.isAdmin && h('button', { type: 'button', id: 'delete-study', class: 'btn btn-danger-ghost admin-only', onclick: onDelete },
        icon('trash'), 'Delete study')));
}

function thumbnail(seriesId, instance, label) {
  const img = h('img', {
    class: 'thumb', alt: `Preview of ${label}`, decoding: 'async', width: 256, height: 256,
  });
  const frame = h('a', { class: 'thumb-frame', href: `/ui/series/${seriesId}`, 'aria-label': `Open ${label} in the viewer` },
    img, h('span', { class: 'thumb-missing' }, icon('image', 32), 'No preview'));
  if (!instance) frame.classList.add('is-missing');
  else {
    img.addEventListener('error', () => frame.classList.add('is-missing'));
    img.addEventListener('load', () => frame.classList.add('is-loaded'));
    img.src = thumbnailUrl(instance.ID);
  }
  return frame;
}

function instanceRows(seriesId, instances, onTags) {
  return instances.map((inst, index) => {
    const t = inst.MainDicomTags || {};
    const frames = parseInt(t.NumberOfFrames, 10) || 1;
    return h('li', { class: 'instance-row', 'data-id': inst.ID },
      h('a', { class: 'instance-open', href: `/ui/series/${seriesId}?i=${index}` },
        h('span', { class: 'instance-no' }, `#${t.InstanceNumber || index + 1}`),
        frames > 1 && h('span', { class: 'chip' }, `${frames} frames`)),
      h('span', { class: 'instance-size muted' }, bytes(inst.FileSize)),
      h('span', { class: 'instance-actions' },
        h('a', { class: 'link-btn download-file', href: `/instances/${inst.ID}/file`, download: `${t.SOPInstanceUID || inst.ID}.dcm`, title: 'Download the DICOM file' },
          icon('file', 16), 'File'),
        h('a', { class: 'link-btn show-tags', href: `/ui/instances/${inst.ID}`, onclick: (e) => { e.preventDefault(); onTags(inst); } },
          icon('tags', 16), 'Tags')));
  });
}

function seriesCard({ series, instances }, { onDelete, onTags }) {
  const t = series.MainDicomTags || {};
  const label = `${t.SeriesNumber ? `Series ${t.SeriesNumber}` : 'Series'}${t.SeriesDescription ? ` — ${t.SeriesDescription}` : ''}`;
  const middle = instances[Math.floor((instances.length - 1) / 2)];
  const frames = instances.reduce((n, i) => n + (parseInt(i.MainDicomTags.NumberOfFrames, 10) || 1), 0);
  // The whole card opens the viewer; its links and buttons keep their own job.
  const open = (e) => {
    if (!e.target.closest('a, button, input, select, label')) navigate(`/ui/series/${series.ID}`);
  };
  const card = h('article', { class: 'card series-card', 'data-id': series.ID, 'aria-label': label, onclick: open },
    thumbnail(series.ID, middle, label),
    h('div', { class: 'series-info' },
      h('h3', { class: 'series-title' },
        h('a', { href: `/ui/series/${series.ID}` }, t.SeriesDescription || 'No description')),
      h('p', { class: 'series-meta' },
        t.Modality && h('span', { class: `chip chip-${t.Modality.toLowerCase()}` }, t.Modality),
        t.SeriesNumber && h('span', {}, `Series ${t.SeriesNumber}`),
        h('span', {}, plural(instances.length, 'instance')),
        frames > instances.length && h('span', {}, plural(frames, 'frame'))),
      h('div', { class: 'series-actions' },
        h('a', { class: 'btn btn-primary btn-sm open-viewer', href: `/ui/series/${series.ID}` }, 'Open viewer'),
        h('a', { class: 'btn btn-sm download-series', href: `/series/${series.ID}/archive`, download: `series-${t.SeriesNumber || series.ID}.zip` },
          icon('download', 16), 'ZIP'),
        session.isAdmin && h('button', { type: 'button', class: 'btn btn-sm send-series admin-only', onclick: () => sendDialog(series.ID, label) },
          icon('upload', 16), 'Send to…'),
        session.isAdmin && h('button', { type: 'button', class: 'btn btn-sm btn-danger-ghost delete-series admin-only', onclick: () => onDelete(series, label, card) },
          icon('trash', 16), 'Delete'))),
    h('div', { class: 'series-instances' },
      h('h4', { class: 'visually-hidden' }, `Instances of ${label}`),
      h('ol', { class: 'instance-list' }, instanceRows(series.ID, instances, onTags))));
  return card;
}

function tagDrawer() {
  const title = h('h2', { id: 'drawer-title' }, 'Tags');
  const body = h('div', { class: 'drawer-body' });
  const closeBtn = h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close the tags' }, icon('close'));
  const drawer = h('aside', { class: 'drawer', 'aria-labelledby': 'drawer-title', hidden: true },
    h('div', { class: 'drawer-head' }, title, closeBtn), body);
  let controller = null;
  let opener = null;
  const close = () => { controller?.abort(); drawer.hidden = true; opener?.focus(); };
  closeBtn.addEventListener('click', close);
  drawer.addEventListener('keydown', (e) => { if (e.key === 'Escape') close(); });
  return {
    drawer,
    async open(inst) {
      controller?.abort();
      controller = new AbortController();
      opener = document.activeElement;
      title.textContent = `Tags of instance ${inst.MainDicomTags.InstanceNumber || ''}`;
      body.replaceChildren(loading('Reading the tags…'));
      drawer.hidden = false;
      closeBtn.focus();
      try {
        const built = await tagTable(inst.ID, controller.signal);
        body.replaceChildren(built.filter,
          h('a', { class: 'link-btn', href: `/ui/instances/${inst.ID}` }, 'Open on its own page'),
          h('div', { class: 'table-wrap' }, built.table));
      } catch (error) {
        if (error.name === 'AbortError') return;
        body.replaceChildren(h('p', { class: 'muted' }, 'The tags could not be read.'));
        reportError('Could not read the tags', error);
      }
    },
    close,
  };
}

export function mount(main, { params: [id] }) {
  const controller = new AbortController();
  const signal = controller.signal;
  setTitle('Study');
  const page = h('section', { class: 'page page-study' }, loading('Loading the study…'));
  main.append(page);
  const tags = tagDrawer();

  async function deleteStudy(study) {
    const name = personName(study.PatientMainDicomTags?.PatientName) || 'this patient';
    const ok = await confirmDialog({
      title: 'Delete this study?',
      text: `The study "${study.MainDicomTags.StudyDescription || 'without description'}" of ${name} and all its images will be removed from the server. This cannot be undone.`,
      confirm: 'Delete study',
    });
    if (!ok) return;
    try {
      await del(`/studies/${study.ID}`);
      notice('Study deleted.');
      navigate('/ui/');
    } catch (error) {
      reportError('Could not delete the study', error);
    }
  }

  async function deleteSeries(series, label, card) {
    const ok = await confirmDialog({
      title: 'Delete this series?',
      text: `${label} and its ${plural(series.Instances.length, 'instance')} will be removed from the server. This cannot be undone.`,
      confirm: 'Delete series',
    });
    if (!ok) return;
    try {
      await del(`/series/${series.ID}`);
      card.remove();
      if (!page.querySelector('.series-card')) {
        // The server removes a study with its last series.
        notice('Series deleted; the study had no other series.');
        navigate('/ui/');
      } else {
        notice('Series deleted.');
        const count = page.querySelector('.series-count');
        count.textContent = plural(page.querySelectorAll('.series-card').length, 'series', 'series');
      }
    } catch (error) {
      reportError('Could not delete the series', error);
    }
  }

  (async () => {
    try {
      const [study, seriesList, system] = await Promise.all([
        get(`/studies/${id}`, { signal }),
        get(`/studies/${id}/series?expand`, { signal }),
        get('/system', { signal }),
      ]);
      const withInstances = await Promise.all(seriesList.map(async (series) => ({
        series,
        instances: (await get(`/series/${series.ID}/instances?expand`, { signal })).sort(byNumber),
      })));
      withInstances.sort(seriesOrder);
      const p = study.PatientMainDicomTags || {};
      setTitle(study.MainDicomTags.StudyDescription || 'Study', personName(p.PatientName));
      const cards = withInstances.map((entry) => seriesCard(entry, {
        onDelete: deleteSeries,
        onTags: (inst) => tags.open(inst),
      }));
      page.replaceChildren(
        h('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' },
          h('a', { href: '/ui/' }, 'Studies'), ' › ',
          h('span', { 'aria-current': 'page' }, personName(p.PatientName) || 'Study')),
        studyHeader(study, [...new Set(withInstances.map((e) => e.series.MainDicomTags.Modality).filter(Boolean))], () => deleteStudy(study), system.OhifViewer),
        h('div', { class: 'section-head' },
          h('h2', {}, 'Series'),
          h('span', { class: 'series-count muted' }, plural(cards.length, 'series', 'series'))),
        h('div', { class: 'series-list' }, cards),
        tags.drawer);
    } catch (error) {
      if (error.name === 'AbortError') return;
      page.replaceChildren(h('div', { class: 'empty-state' },
        h('h1', {}, error.status === 404 ? 'Study not found' : 'The study could not be loaded'),
        h('p', { class: 'muted' }, error.status === 404 ? 'It may have been deleted.' : error.message),
        h('a', { class: 'btn btn-primary', href: '/ui/' }, 'Back to the study list')));
      reportError('Could not load the study', error);
    }
  })();

  return { unmount: () => controller.abort() };
}
