/**
 * Paths of the keys that appear more than once in one object of valid JSON `text`, such as
 * `datasets.tank/root` or `contents[1].mode`. JSON.parse keeps the last silently, so a config
 * that names a field twice would lose the first without a word.
 */
export function duplicateJsonKeys(text: string): string[] {
  // on valid JSON, strings and punctuation are all a key needs: a string right after { or , in an object
  const tokens = /"(?:[^"\\]|\\.)*"|[{}[\],]/g;
  const stack: { keys?: Set<string>; path: string; index: number; key?: string }[] = [];
  const duplicates: string[] = [];
  let previous = '';
  for (const [token] of text.matchAll(tokens)) {
    const top = stack.at(-1);
    if (token === '{' || token === '[') {
      const path = top === undefined ? '' : top.keys ? field(top.path, top.key!) : `${top.path}[${top.index}]`;
      stack.push(token === '{' ? { keys: new Set(), path, index: 0 } : { path, index: 0 });
    } else if (token === '}' || token === ']') {
      stack.pop();
    } else if (token === ',') {
      if (top && !top.keys) top.index += 1;
    } else if (top?.keys && (previous === '{' || previous === ',')) {
      const key = JSON.parse(token) as string;
      if (top.keys.has(key)) duplicates.push(field(top.path, key));
      top.keys.add(key);
      top.key = key;
    }
    previous = token;
  }
  return duplicates;
}

// an empty key, or one with a control character, is quoted as the config's own messages quote it, so it shows
const shownKey = (key: string): string => (key === '' || /[\x00-\x1f\x7f]/.test(key) ? JSON.stringify(key) : key);
const field = (path: string, key: string): string => (path === '' ? shownKey(key) : `${path}.${shownKey(key)}`);
