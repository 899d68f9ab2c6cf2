// The viewer's side strip: every series of the study as a thumbnail, the shown one marked;
// choosing another opens it in the viewer.

import { get, thumbnailUrl } from '../api.js';
import { h, icon } from '../ui.js';

const num = (v) => parseFloat(v) || 0;

function item(series, instances, current) {
  const t = series.MainDicomTags || {};
  const sorted = [...instances].sort((a, b) => num(a.MainDicomTags.InstanceNumber) - num(b.MainDicomTags.InstanceNumber));
  const middle = sorted[Math.floor((sorted.length - 1) / 2)];
  const frame = h('span', { class: 'strip-thumb' }, h('span', { class: 'thumb-missing' }, icon('image', 22)));
  if (middle) {
    const img = h('img', { alt: '', decoding: 'async', width: 112, height: 112 });
    img.addEventListener('load', () => frame.classList.add('is-loaded'));
    img.addEventListener('error', () => frame.classList.add('is-missing'));
    img.src = thumbnailUrl(middle.ID, 160);
    frame.prepend(img);
  } else {
    frame.classList.add('is-missing');
  }
  return h('li', {},
    h('a', {
      class: 'strip-item', href: `/ui/series/${series.ID}`, 'data-id': series.ID,
      'aria-current': series.ID === current ? 'true' : null,
    },
    frame,
    h('span', { class: 'strip-text' },
      h('span', { class: 'strip-title' }, t.SeriesDescription || 'No description'),
      h('span', { class: 'strip-meta' }, [t.Modality, t.SeriesNumber && `Se ${t.SeriesNumber}`, `${instances.length} img`].filter(Boolean).join(' · ')))));
}

/** Fills `list` (an <ol>) with the series of the study; leaves it empty if they cannot load. */
export async function fillStrip(list, studyId, currentSeries, signal) {
  const series = await get(`/studies/${studyId}/series?expand`, { signal });
  const withInstances = await Promise.all(series.map(async (s) => ({
    series: s,
    instances: await get(`/series/${s.ID}/instances?expand`, { signal }).catch(() => []),
  })));
  withInstances.sort((a, b) => num(a.series.MainDicomTags.SeriesNumber) - num(b.series.MainDicomTags.SeriesNumber));
  list.replaceChildren(...withInstances.map(({ series: s, instances }) => item(s, instances, currentSeries)));
  list.querySelector('[aria-current]')?.scrollIntoView({ block: 'nearest' });
}
