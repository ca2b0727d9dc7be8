// DOM helpers: every text goes through text nodes, never HTML parsing (ids and values come
// from devices and from the URL).
const SAFE_ATTRS = /^(class|id|href|for|type|value|title|role|scope|hidden|lang|min|max|low|high|optimum|tabindex|aria-[a-z]+|data-[a-z-]+)$/;

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (!SAFE_ATTRS.test(name)) throw new Error(`attribute not allowed: ${name}`);
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

export function replace(node, ...children) {
  clear(node);
  for (const child of children.flat(Infinity)) if (child) node.append(child);
}

// Live views rebuild their content at every poll. patch() turns what is on the page into the
// new content while keeping every node that is still wanted, so a keyboard user's focused
// link stays focused (and keeps its place in the Tab order) across refreshes, and an
// unchanged refresh touches nothing. Children carrying data-key are matched by key, the
// others by position and tag. For display content only: form controls' live state
// (value, checked) is not carried over.
export function patch(parent, ...children) {
  const active = document.activeElement;
  const hadFocus = active !== null && active !== parent && parent.contains(active);
  patchChildren(parent, children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
  // Moving a node (rows that changed order) blurs it: give the focus back.
  if (hadFocus && document.activeElement !== active && active.isConnected) active.focus({ preventScroll: true });
}

function keyOf(node) {
  return node.nodeType === Node.ELEMENT_NODE ? node.getAttribute("data-key") : null;
}

function sameKind(a, b) {
  return a.nodeType === b.nodeType && a.nodeName === b.nodeName && keyOf(a) === keyOf(b);
}

function patchNode(old, fresh) {
  if (old.nodeType !== Node.ELEMENT_NODE) {
    if (old.nodeValue !== fresh.nodeValue) old.nodeValue = fresh.nodeValue;
    return;
  }
  for (const { name } of [...old.attributes]) if (!fresh.hasAttribute(name)) old.removeAttribute(name);
  for (const { name, value } of [...fresh.attributes]) if (old.getAttribute(name) !== value) old.setAttribute(name, value);
  patchChildren(old, [...fresh.childNodes]);
}

function patchChildren(parent, wanted) {
  const keys = new Set(wanted.map(keyOf).filter((k) => k !== null));
  // Drop the keyed children that are gone first, so that removing a row never moves (and
  // so never blurs) the rows after it.
  const byKey = new Map();
  for (const child of [...parent.childNodes]) {
    const key = keyOf(child);
    if (key === null) continue;
    if (keys.has(key) && !byKey.has(key)) byKey.set(key, child);
    else child.remove();
  }
  let cursor = parent.firstChild;
  for (const fresh of wanted) {
    const key = keyOf(fresh);
    let match = key === null ? cursor : byKey.get(key);
    if (match && !sameKind(match, fresh)) match = null;
    if (!match) {
      parent.insertBefore(fresh, cursor);
      continue;
    }
    if (key !== null) byKey.delete(key);
    if (match === cursor) cursor = cursor.nextSibling;
    else parent.insertBefore(match, cursor);
    patchNode(match, fresh);
  }
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
}

export function select(id, labelText, options, current) {
  const box = el("select", { id });
  for (const [value, text] of options) {
    const option = el("option", { value }, text);
    if (value === current) option.selected = true;
    box.append(option);
  }
  return [el("label", { for: id }, labelText), box];
}

export function objectHref(id, at) {
  return `#/object/${encodeURIComponent(id)}` + (at ? `?at=${encodeURIComponent(String(at))}` : "");
}
