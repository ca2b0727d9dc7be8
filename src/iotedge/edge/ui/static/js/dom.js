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
