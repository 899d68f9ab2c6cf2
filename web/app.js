// The UI's entry point: asks who is signed in, sets up the header, starts the router.

import { session, loadSession, logout, setUnauthorizedHandler } from './js/api.js';
import { start, navigate } from './js/router.js';
import { clearError, showError } from './js/ui.js';
import * as listPage from './js/pages/list.js';
import * as studyPage from './js/pages/study.js';
import * as viewerPage from './js/pages/viewer.js';
import * as loginPage from './js/pages/login.js';
import * as tagsPage from './js/pages/tags.js';
import * as notFoundPage from './js/pages/notfound.js';
import * as remotePage from './js/pages/remote.js';

const routes = [
  { name: 'studies', pattern: /^\/ui\/?(?:index\.html)?$/, page: listPage },
  { name: 'login', pattern: /^\/ui\/login\/?$/, page: loginPage, public: true },
  { name: 'study', pattern: /^\/ui\/studies\/([^/]+)\/?$/, page: studyPage },
  { name: 'viewer', pattern: /^\/ui\/series\/([^/]+)\/?$/, page: viewerPage },
  { name: 'instance', pattern: /^\/ui\/instances\/([^/]+)\/?$/, page: tagsPage },
  { name: 'remote', pattern: /^\/ui\/remote\/?$/, page: remotePage },
  { name: 'not-found', pattern: /^$/, page: notFoundPage },
];

/** Where to come back to after signing in. */
function here() {
  return location.pathname + location.search;
}

function toLogin() {
  const next = location.pathname.startsWith('/ui/login') ? '' : `?next=${encodeURIComponent(here())}`;
  navigate(`/ui/login${next}`, { replace: true });
}

function beforeEach(route) {
  clearError();
  if (!route.public && !session.known) {
    toLogin();
    return false;
  }
  return true;
}

export function renderAccount() {
  const account = document.getElementById('account');
  const user = document.getElementById('user');
  const signout = document.getElementById('signout');
  if (!session.known) {
    account.hidden = true;
    return;
  }
  account.hidden = false;
  user.replaceChildren();
  if (session.user) {
    user.append(session.user, ' ');
    const role = document.createElement('span');
    role.className = `role role-${session.role}`;
    role.textContent = session.role;
    user.append(role);
    signout.hidden = false;
  } else {
    user.textContent = 'Open access';
    user.title = 'The server runs without users: anyone on this computer may use it.';
    signout.hidden = true;
  }
}

document.addEventListener('routechange', (event) => {
  const name = event.detail.route.name;
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.getElementById('topnav').hidden = !session.known;
  document.getElementById('nav-remote').hidden = !session.isAdmin;
  renderAccount();
});

document.getElementById('error-close').addEventListener('click', clearError);
document.getElementById('signout').addEventListener('click', async () => {
  try {
    await logout();
  } catch (error) {
    showError(error);
  }
  renderAccount();
  navigate('/ui/login');
});

setUnauthorizedHandler(() => {
  Object.assign(session, { user: null, role: null, csrf: null, known: false, expired: true });
  renderAccount();
  toLogin();
});

async function boot() {
  try {
    await loadSession();
  } catch (error) {
    // Not a 401: the server cannot be reached or failed. Say so, and offer to try again.
    const main = document.getElementById('main');
    const retry = document.createElement('button');
    retry.type = 'button';
    retry.className = 'btn btn-primary';
    retry.textContent = 'Try again';
    retry.addEventListener('click', () => { clearError(); main.replaceChildren(); boot(); }, { once: true });
    const box = document.createElement('section');
    box.className = 'page empty-state';
    const heading = document.createElement('h1');
    heading.textContent = 'Orthweb is not answering';
    box.append(heading, retry);
    main.replaceChildren(box);
    showError(error.status ? `The server answered with an error: ${error.message}` : error.message);
    return;
  }
  renderAccount();
  await start(routes, beforeEach);
}

boot();
