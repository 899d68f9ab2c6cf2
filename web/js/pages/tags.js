// /ui/instances/{id}: every tag of one instance, with links back to its study and series.

import { get } from '../api.js';
import { h, icon, loading, reportError, setTitle } from '../ui.js';
import { tagTable } from '../tagtable.js';

export function mount(main, { params: [id] }) {
  const controller = new AbortController();
  setTitle('Instance tags');
  const body = h('div', { class: 'tags-body' }, loading('Reading the tags…'));
  const crumbs = h('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' }, h('a', { href: '/ui/' }, 'Studies'));
  main.append(h('section', { class: 'page page-tags' },
    crumbs,
    h('div', { class: 'page-head' },
      h('h1', {}, 'Instance tags'),
      h('div', { class: 'page-actions' },
        h('a', { class: 'btn', href: `/instances/${id}/file`, download: `${id}.dcm` }, icon('download'), 'Download file'))),
    body));

  (async () => {
    try {
      const [instance, built] = await Promise.all([
        get(`/instances/${id}`, { signal: controller.signal }),
        tagTable(id, controller.signal),
      ]);
      const series = await get(`/series/${instance.ParentSeries}`, { signal: controller.signal });
      crumbs.append(' › ', h('a', { href: `/ui/studies/${series.ParentStudy}` }, 'Study'),
        ' › ', h('a', { href: `/ui/series/${series.ID}` }, series.MainDicomTags.SeriesDescription || 'Series'),
        ' › ', h('span', { 'aria-current': 'page' }, `Instance ${instance.MainDicomTags.InstanceNumber || ''}`));
      body.replaceChildren(built.filter, h('div', { class: 'table-wrap' }, built.table));
    } catch (error) {
      if (error.name === 'AbortError') return;
      body.replaceChildren();
      reportError('Could not read the tags', error);
    }
  })();
  return { unmount: () => controller.abort() };
}
