import type { Json } from '../engine/task.ts';

/** JSON with object keys sorted at every depth, so equal values always hash alike. */
export function canonicalJson(value: Json): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v as Json)).join(',')}]`;
  const record = value as { readonly [key: string]: Json };
  const keys = Object.keys(record)
    .filter((k) => record[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k]!)}`).join(',')}}`;
}
