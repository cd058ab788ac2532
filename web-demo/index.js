/*
 * index.js: the start page. `make run` prints a link to it whose fragment
 * carries the demo's credentials (#alice=<jwt>&bob=...&cabinet1=<key>...).
 * The fragment never reaches the hub; this page keeps it in sessionStorage
 * (this tab), takes it out of the address bar and shows one signed-in link
 * per demo page. Without it, the page only says how to start the demo: the
 * hub never serves a credential to anyone.
 */
import { $, el, fill } from '/common.js';

const KEY = 'rn:demo-links';
const LABELS = [
  ['alice', 'Alice’s phone', '/phone.html', 'token'],
  ['bob', 'Bob’s phone', '/phone.html', 'token'],
  ['new', 'A new player (sign-up)', '/phone.html', 'token'],
  ['admin', 'Operations console', '/admin.html', 'token'],
];

function readFragment() {
  const frag = new URLSearchParams(location.hash.slice(1));
  if ([...frag.keys()].length) {
    const creds = Object.fromEntries([...frag.entries()].filter(([k, v]) => /^(alice|bob|new|admin|cabinet\d+)$/.test(k) && v));
    try { sessionStorage.setItem(KEY, JSON.stringify(creds)); } catch { /* this load only */ }
    history.replaceState(null, '', location.pathname + location.search);
    return creds;
  }
  try { return JSON.parse(sessionStorage.getItem(KEY) || '{}'); } catch { return {}; }
}

const creds = readFragment();
const links = LABELS.filter(([k]) => creds[k]).map(([k, label, page, param]) =>
  el('li', {}, el('a', { href: `${page}#${param}=${encodeURIComponent(creds[k])}`, 'data-who': k, target: '_blank', rel: 'noopener' }, label)));
for (const k of Object.keys(creds).filter((x) => x.startsWith('cabinet')).sort()) {
  const n = k.slice('cabinet'.length);
  links.push(el('li', {}, el('a', { href: `/cabinet.html#key=${encodeURIComponent(creds[k])}`, 'data-who': k, target: '_blank', rel: 'noopener' }, `Cabinet screen, arcade ${n}`)));
}
if (links.length) {
  fill($('#demo-links'), links);
  $('#demo').hidden = false;
  $('#nodemo').hidden = true;
}
