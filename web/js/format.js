// How DICOM values are shown: person names, dates, times, sizes.

/** "DOE^JOHN^^DR" → "DOE, JOHN DR". */
export function personName(value) {
  if (!value) return '';
  const [family = '', given = '', middle = '', prefix = '', suffix = ''] = String(value).split('=')[0].split('^');
  const rest = [prefix, given, middle, suffix].filter(Boolean).join(' ');
  return family && rest ? `${family}, ${rest}` : family || rest;
}

/** "20240315" → "2024-03-15" (ISO: unambiguous in every country). */
export function dicomDate(value) {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(String(value || '').trim());
  return m ? `${m[1]}-${m[2]}-${m[3]}` : (value || '');
}

/** "101500.123" → "10:15". */
export function dicomTime(value) {
  const m = /^(\d{2})(\d{2})?/.exec(String(value || '').trim());
  return m ? `${m[1]}:${m[2] || '00'}` : '';
}

/** The age at the study date, e.g. "58 y". */
export function age(birth, at) {
  const b = /^(\d{4})(\d{2})(\d{2})$/.exec(birth || '');
  const s = /^(\d{4})(\d{2})(\d{2})$/.exec(at || '');
  if (!b || !s) return '';
  let years = +s[1] - +b[1];
  if (+s[2] < +b[2] || (+s[2] === +b[2] && +s[3] < +b[3])) years -= 1;
  return years >= 0 ? `${years} y` : '';
}

/** YYYYMMDD ↔ the YYYY-MM-DD of <input type=date>. */
export const toInputDate = (v) => dicomDate(v);
export const fromInputDate = (v) => String(v || '').replaceAll('-', '');

export function bytes(n) {
  if (!Number.isFinite(n)) return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n < 10 && i > 0 ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/** A number for the W/C read-out: whole when large, two decimals when small. */
export function level(v) {
  if (!Number.isFinite(v)) return '—';
  return Math.abs(v) >= 10 ? String(Math.round(v)) : String(Math.round(v * 100) / 100);
}
