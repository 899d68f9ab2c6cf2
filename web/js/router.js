// Client-side routes under /ui/: the URL is the state. Pages are modules with
// `mount(main, {params, query})` answering an optional `{update(query), unmount()}`.

let routes = [];
let current = null;   // { route, params, handle }
let guard = () => true;

/** routes: [{ pattern: RegExp, page, name, public }]; guard(route, url) may redirect. */
export function start(table, beforeEach) {
  routes = table;
  guard = beforeEach;
  window.addEventListener('popstate', () => render());
  document.addEventListener('click', onLinkClick);
  return render();
}

/** Goes to a URL inside the UI (pushes a history entry unless replace). */
export function navigate(url, { replace = false } = {}) {
  const target = new URL(url, location.href);
  if (target.href !== location.href) {
    if (replace) history.replaceState(null, '', target);
    else history.pushState(null, '', target);
  }
  return render();
}

/** Changes the query string without re-rendering (state the page already shows). */
export function replaceQuery(query) {
  const qs = query.toString();
  history.replaceState(null, '', location.pathname + (qs ? `?${qs}` : ''));
}

/** Re-runs the current page from scratch (after sign-in, or to refresh). */
export function reload() {
  if (current) teardown();
  return render();
}

function teardown() {
  try { current.handle?.unmount?.(); } catch (error) { console.error(error); }
  current = null;
}

async function render() {
  const path = location.pathname;
  const query = new URLSearchParams(location.search);
  let match = null;
  let route = routes.find((r) => (match = r.pattern.exec(path)));
  if (!route) route = routes.find((r) => r.name === 'not-found');
  if (!guard(route, location)) return;
  const params = match ? match.slice(1).map(decodeURIComponent) : [];
  // Same page, new query (paging, searching): let the page update in place.
  if (current && current.route === route && current.path === path && current.handle?.update) {
    current.handle.update(query);
    return;
  }
  if (current) teardown();
  const main = document.getElementById('main');
  main.replaceChildren();
  document.body.dataset.page = route.name;
  document.dispatchEvent(new CustomEvent('routechange', { detail: { route } }));
  const entry = { route, path, handle: null };
  current = entry;
  const handle = await route.page.mount(main, { params, query });
  if (current === entry) entry.handle = handle;
  else handle?.unmount?.();
}

function onLinkClick(event) {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest('a[href]');
  if (!link || link.hasAttribute('download') || link.target) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/ui/')) return;
  if (/\.[a-z0-9]+$/i.test(url.pathname)) return;
  event.preventDefault();
  navigate(url.href);
}
