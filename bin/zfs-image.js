#!/usr/bin/env node
// @ts-check
// The package's command: the project's Taskfile.ts, run from a bundle kept in
// node_modules/.cache (rebuilt when a source changes; ZFS_IMAGE_SOURCES=1 runs the .ts sources).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { importTaskfile } from './taskfile-bundle.js';

process.env['TASKFILE_PROGRAM'] ??= 'zfs-image';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
await importTaskfile(path.join(root, 'Taskfile.ts'), path.join(root, 'node_modules', '.cache', 'nixos-zfs-image'));
