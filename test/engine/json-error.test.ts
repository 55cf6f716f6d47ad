import { describe, expect, it } from 'vitest';
import { describeJsonError } from '../../lib/cli/config-file.ts';
import { jsonErrorOffset } from '../../lib/cli/json-error-position.ts';
import { duplicateJsonKeys } from '../../lib/cli/json-duplicate-keys.ts';

describe('JSON error positions', () => {
  it('accepts valid JSON', () => {
    for (const text of ['{}', '[1, -2.5e3, "a\\u00e9", true, false, null]', ' {"a": {"b": []}} ']) {
      expect(jsonErrorOffset(text), text).toBeUndefined();
      JSON.parse(text);
    }
  });
  it('points at the first bad character', () => {
    expect(jsonErrorOffset('{\n  "format": raw\n}')).toBe(14);
    expect(jsonErrorOffset('{"a": 1,}')).toBe(8);
    expect(jsonErrorOffset('{"a": 1')).toBe(7);
    expect(jsonErrorOffset('[1 2]')).toBe(3);
    expect(jsonErrorOffset('{"a": "x\ny"}')).toBe(8);
  });
  it('describes it as line and column', () => {
    const text = '{\n  "name": "x",\n  "format": raw\n}\n';
    expect(describeJsonError(text, 'Unexpected token')).toMatch(/^at line 3, column 13: unexpected "r"/);
    expect(describeJsonError('{"a": 1', 'Unexpected end of JSON input')).toMatch(/^at line 1, column 8: unexpected end of file/);
  });
});

describe('duplicate JSON keys', () => {
  it('names each key given twice in one object by its path, at any depth', () => {
    const text = JSON.stringify({ a: 1, datasets: { 'tank/root': { mount: '/' } }, contents: [{ source: 'x' }, { source: 'y' }] }, null, 2)
      .replace('"a": 1,', '"a": 1, "a": 2,')
      .replace('"mount": "/"', '"mount": "/", "mount": "/x"')
      .replace('"source": "y"', '"source": "y", "source": "z"');
    expect(duplicateJsonKeys(text)).toEqual(['a', 'datasets.tank/root.mount', 'contents[1].source']);
  });

  it('tells keys from string values and escaped quotes, and the same key in sibling objects is fine', () => {
    const text = '{"k": "k", "l": ["k", {"k": 1}], "m": {"k": "\\"k\\": 1,"}, "n\\u0041": 1, "nA": 2}';
    expect(duplicateJsonKeys(text)).toEqual(['nA']);
    expect(duplicateJsonKeys('{"x": {"a": 1}, "y": {"a": 1}}')).toEqual([]);
    expect(duplicateJsonKeys('[1, "a", {"a": [], "b": {}}]')).toEqual([]);
  });
});
