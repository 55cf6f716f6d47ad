#!/usr/bin/env node
// The package's command: loads tsx's loader, then the project's Taskfile.
import { register } from 'tsx/esm/api';

register();
await import('../Taskfile.ts');
