// A route the UI does not know.

import { h, setTitle } from '../ui.js';

export function mount(main) {
  setTitle('Not found');
  main.append(h('section', { class: 'page empty-state' },
    h('h1', {}, 'Page not found'),
    h('p', {}, 'This address does not match any page of Orthweb.'),
    h('a', { class: 'btn btn-primary', href: '/ui/' }, 'Go to the study list')));
}
