// /ui/login: the sign-in form. After signing in, goes back to ?next= (or the list).

import { login, session, describeStatus } from '../api.js';
import { navigate } from '../router.js';
import { h, setTitle } from '../ui.js';

function nextUrl(query) {
  const next = query.get('next') || '/ui/';
  // Only a path of the UI itself: never an address elsewhere.
  return next.startsWith('/ui/') && !next.startsWith('/ui/login') ? next : '/ui/';
}

export function mount(main, { query }) {
  setTitle('Sign in');
  if (session.known && session.open) {
    navigate(nextUrl(query), { replace: true });
    return null;
  }
  const error = h('p', { id: 'login-error', class: 'form-error', role: 'alert', hidden: true });
  const username = h('input', {
    id: 'login-username', name: 'username', autocomplete: 'username', required: true,
    autocapitalize: 'none', spellcheck: 'false',
  });
  const password = h('input', {
    id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true,
  });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, 'Sign in');
  const form = h('form', { id: 'login', class: 'login-form', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'login-username' }, 'User name'), username),
    h('div', { class: 'field' }, h('label', { for: 'login-password' }, 'Password'), password),
    error,
    submit);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.hidden = true;
    if (!username.value.trim() || !password.value) {
      error.textContent = 'Enter your user name and password.';
      error.hidden = false;
      (username.value.trim() ? password : username).focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      await login(username.value.trim(), password.value);
      navigate(nextUrl(query), { replace: true });
    } catch (e) {
      error.textContent = e.status === 401
        ? 'Wrong user name or password.'
        : e.message || describeStatus(e.status);
      error.hidden = false;
      password.select();
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Sign in';
    }
  });

  const expired = session.expired;
  session.expired = false;
  main.append(h('section', { class: 'login-page' },
    h('div', { class: 'login-card' },
      h('img', { class: 'login-mark', src: '/ui/favicon.svg', alt: '', width: 48, height: 48 }),
      h('h1', {}, 'Sign in to Orthweb'),
      h('p', { class: 'muted' }, 'Medical images of this site. Authorised staff only.'),
      expired && h('p', { class: 'login-note', role: 'status' }, 'Your session has ended. Sign in again to continue where you were.'),
      form)));
  username.focus();
  return null;
}
