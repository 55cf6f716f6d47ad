import { describe, expect, it } from 'vitest';
import { describeJsonError } from '../../lib/cli/config-file.ts';
import { jsonErrorOffset } from '../../lib/cli/json-error-position.ts';

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
