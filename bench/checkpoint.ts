// Benchmark 2, checkpoints: a 4 GiB sparse disk holding 256 MiB of data, published into the
// cache (the engine's CacheStore.publish) and restored as a working copy (ctx.copyDisk, i.e.
// lib/caching/disk-copy.ts), against one plain `cp --sparse=always` of the same file.
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { link, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { openCache, type CacheStore } from '../lib/caching/cache-store.ts';
import { allocatedBytes } from '../lib/caching/free-space.ts';
import { copyDisk } from '../lib/caching/disk-copy.ts';
import { MANIFEST_FORMAT } from '../lib/caching/fingerprint.ts';
import { median, round, scratchDir, sync, timeIt } from './lib/measure.ts';
import type { BenchResult } from './lib/result.ts';

const MiB = 1024 * 1024;
const DISK_MIB = 4096;
const DATA_MIB = 256;
/** The data is written as this many extents spread over the disk (a used file system is not one block). */
const EXTENTS = 16;
const SPACE_GOAL = 1.1;
const TIME_GOAL = 2;

/** Makes the sparse source disk: DISK_MIB apparent, DATA_MIB of random data in EXTENTS pieces. */
async function makeSource(file: string): Promise<void> {
  await execa('truncate', ['-s', `${DISK_MIB}M`, file]);
  const piece = DATA_MIB / EXTENTS;
  const stride = DISK_MIB / EXTENTS;
  for (let i = 0; i < EXTENTS; i++) {
    await execa('dd', ['if=/dev/urandom', `of=${file}`, 'bs=1M', `count=${piece}`, `seek=${i * stride + 1}`, 'conv=notrunc', 'status=none']);
  }
}

/**
 * One checkpoint: the disk laid out in a staging folder, as a task leaves it, then published.
 * The disk is put there as a hard link of the source (untimed): the published artifact is then
 * the very inode the plain cp reads, so both sides copy the same bytes from the same pages,
 * and no untimed 256 MiB write sits between the two timed copies.
 */
async function checkpoint(store: CacheStore, source: string): Promise<{ ms: number; artifact: string; fingerprint: string }> {
  const staging = await store.makeStaging('bench-checkpoint');
  await link(source, path.join(staging, 'disk.raw'));
  const fingerprint = randomBytes(32).toString('hex');
  const manifest = { format: MANIFEST_FORMAT, id: 'bench-checkpoint', version: 1, inputs: null, files: {}, tools: {}, deps: {} };
  const { ms } = await timeIt(() =>
    store.publish({ fingerprint, taskId: 'bench-checkpoint', manifest, values: {}, specs: [{ name: 'disk.raw', kind: 'disk' }], staging, durationMs: 0 }),
  );
  return { ms, artifact: store.artifactPath(fingerprint, 'disk.raw'), fingerprint };
}

interface Round {
  readonly plainMs: number;
  readonly plainBytes: number;
  readonly publishMs: number;
  readonly publishedBytes: number;
  readonly restoreMs: number;
  readonly restoredBytes: number;
}

/** A plain `cp --sparse=always` of the source: time and allocated bytes; the copy is removed. */
async function plainCopy(dir: string, source: string): Promise<{ ms: number; bytes: number }> {
  const plain = path.join(dir, 'plain.raw');
  await sync();
  const cp = await timeIt(() => execa('cp', ['--sparse=always', source, plain]));
  const bytes = await allocatedBytes(plain);
  await rm(plain);
  return { ms: cp.ms, bytes };
}

/** Checkpoint then restore: times and allocated bytes; the entry and the working copy are removed. */
async function checkpointAndRestore(dir: string, store: CacheStore, source: string) {
  const published = await checkpoint(store, source);
  const work = path.join(dir, 'work.raw');
  await sync();
  const restore = await timeIt(() => copyDisk(published.artifact, work));
  const result = {
    publishMs: published.ms,
    publishedBytes: await allocatedBytes(published.artifact),
    restoreMs: restore.ms,
    restoredBytes: await allocatedBytes(work),
  };
  if ((await stat(work)).size !== DISK_MIB * MiB) throw new Error('restored copy has the wrong size');
  await rm(work);
  await store.evict(published.fingerprint);
  return result;
}

/** One measured round; odd rounds run the engine's side first, so order effects cancel out. */
async function measureRound(dir: string, store: CacheStore, source: string, index: number): Promise<Round> {
  if (index % 2 === 1) {
    const engine = await checkpointAndRestore(dir, store, source);
    const plain = await plainCopy(dir, source);
    return { plainMs: plain.ms, plainBytes: plain.bytes, ...engine };
  }
  const plain = await plainCopy(dir, source);
  const engine = await checkpointAndRestore(dir, store, source);
  return { plainMs: plain.ms, plainBytes: plain.bytes, ...engine };
}

/** Runs the checkpoint benchmark. */
export async function checkpointBench(runs = Number(process.env['BENCH_RUNS'] ?? 9)): Promise<BenchResult> {
  const dir = await scratchDir('checkpoint');
  try {
    const source = path.join(dir, 'source.raw');
    await makeSource(source);
    const data = await allocatedBytes(source);
    const store = openCache(path.join(dir, 'cache'));
    await measureRound(dir, store, source, 0); // warm-up
    const rounds: Round[] = [];
    for (let i = 0; i < runs; i++) rounds.push(await measureRound(dir, store, source, i));
    const m = (pick: (r: Round) => number): number => median(rounds.map(pick));
    const engineMs = m((r) => r.publishMs + r.restoreMs);
    return {
      name: 'checkpoint',
      title: 'Checkpoint + restore of a 4 GiB sparse disk with 256 MiB of data vs cp --sparse=always',
      runs,
      metrics: [
        { name: 'data in the source disk (allocated)', value: data, unit: 'bytes' },
        { name: 'plain cp --sparse=always, time', value: round(m((r) => r.plainMs)), unit: 'ms' },
        { name: 'checkpoint (publish), time', value: round(m((r) => r.publishMs), 1), unit: 'ms' },
        { name: 'restore (copyDisk), time', value: round(m((r) => r.restoreMs)), unit: 'ms' },
        { name: '(checkpoint + restore) / plain cp, time', value: round(engineMs / m((r) => r.plainMs), 2), unit: 'ratio', max: TIME_GOAL },
        { name: 'checkpoint allocated / data', value: round(m((r) => r.publishedBytes) / data, 3), unit: 'ratio', max: SPACE_GOAL },
        { name: 'restore allocated / data', value: round(m((r) => r.restoredBytes) / data, 3), unit: 'ratio', max: SPACE_GOAL },
        { name: 'plain cp allocated / data', value: round(m((r) => r.plainBytes) / data, 3), unit: 'ratio' },
      ],
      notes: [
        `source: ${DISK_MIB} MiB sparse file, ${DATA_MIB} MiB of /dev/urandom in ${EXTENTS} extents; one warm-up round, then ${runs} measured`,
        'checkpoint = CacheStore.publish of a staging folder holding the disk (rename + stat stamps + st_blocks + 2 cacache index writes); the disk is hard-linked into staging untimed (that is the task\'s work), so the published artifact is the same inode the plain cp reads',
        'restore = copyDisk (cp --reflink=auto --sparse=always) of the published artifact to a working copy',
        'file cache warm for both sides; `sync` (untimed) before each timed copy; rounds alternate which side goes first',
      ],
      details: { rounds: rounds.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, round(v, 1)]))) },
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
