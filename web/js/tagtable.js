// The tag table of one instance (`GET /instances/{id}/tags`): group,element, name, value,
// sequences indented under their parent, with a filter box.

import { get } from './api.js';
import { h } from './ui.js';

function valueText(tag) {
  switch (tag.Type) {
    case 'String': return tag.Value;
    case 'Null': return '';
    case 'TooLong': return '(too long to show)';
    case 'Binary': return '(binary)';
    default: return tag.Value == null ? '' : String(tag.Value);
  }
}

function rows(tags, depth, out) {
  for (const [key, tag] of Object.entries(tags || {})) {
    const isSeq = tag.Type === 'Sequence';
    out.push(h('tr', { class: `tag-row depth-${Math.min(depth, 4)}${isSeq ? ' is-seq' : ''}`, 'data-tag': key },
      h('td', { class: 'tag-key mono' }, key.toUpperCase()),
      h('td', { class: 'tag-name' }, tag.Name || h('span', { class: 'muted' }, 'Private / unknown')),
      h('td', { class: 'tag-value mono' }, isSeq ? `Sequence of ${(tag.Value || []).length} item${(tag.Value || []).length === 1 ? '' : 's'}` : valueText(tag))));
    if (isSeq) {
      (tag.Value || []).forEach((item, i) => {
        out.push(h('tr', { class: `tag-item depth-${Math.min(depth + 1, 4)}` },
          h('td', { colspan: 3, class: 'muted' }, `Item ${i + 1}`)));
        rows(item, depth + 1, out);
      });
    }
  }
  return out;
}

/** Loads and builds the table; throws the ApiError when the tags cannot be read. */
export async function tagTable(instanceId, signal) {
  const tags = await get(`/instances/${instanceId}/tags`, { signal });
  const body = h('tbody', {}, rows(tags, 0, []));
  const table = h('table', { id: 'tags', class: 'data-table tag-table' },
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Tag'), h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Value'))),
    body);
  const filter = h('input', {
    type: 'search', class: 'tag-filter', placeholder: 'Filter by tag, name or value', 'aria-label': 'Filter tags',
  });
  filter.addEventListener('input', () => {
    const needle = filter.value.trim().toLowerCase();
    for (const row of body.rows) {
      row.hidden = needle !== '' && !row.textContent.toLowerCase().includes(needle);
    }
  });
  return { table, filter, tags };
}
