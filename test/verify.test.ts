import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { checkHistory, parseTokens, type FinalState } from '../src/verify/checker.js';
import { classifyResponse, type OpRecord, type OpValue, type Outcome } from '../src/verify/history.js';
import { parseDuration, reproduceCommand, resolveOptions } from '../src/verify/options.js';
import { Random } from '../src/verify/random.js';
import { FAULT_KINDS, generateSchedule, parseFaultKinds, quickSchedule, resourcesOf, type VerifyFaultKind } from '../src/verify/schedule.js';
import { outcomeOf, planDocs, workloadPlan } from '../src/verify/workload.js';
import { runVerify } from '../src/verify/run.js';
import type { JsonObject } from '../src/crdt/types.js';

const REGIONS = ['ap-south', 'eu-west', 'us-east'];

function schedule(seed: number, kinds: readonly VerifyFaultKind[] = FAULT_KINDS, durationMs = 120_000) {
  return generateSchedule({ seed, durationMs, regions: REGIONS, kinds, deadAfterMs: 1500 });
}

describe('fault schedule', () => {
  it('is the same for the same seed and differs for another', () => {
    expect(schedule(42)).toEqual(schedule(42));
    expect(JSON.stringify(schedule(42))).not.toEqual(JSON.stringify(schedule(43)));
  });

  it('covers every requested kind, and only those', () => {
    const all = new Set(schedule(7).map((f) => f.kind));
    expect([...all].sort()).toEqual([...FAULT_KINDS].sort());
    const some: VerifyFaultKind[] = ['bridge', 'pause', 'wipe'];
    const picked = new Set(schedule(7, some, 40_000).map((f) => f.kind));
    expect([...picked].sort()).toEqual([...some].sort());
  });

  it('never overlaps two faults on one region or link, keeps within the run and pauses past the dead timeout', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.integer({ min: 5_000, max: 90_000 }), (seed, durationMs) => {
        const faults = schedule(seed, FAULT_KINDS, durationMs);
        for (const f of faults) {
          expect(f.startMs).toBeGreaterThanOrEqual(1500);
          expect(f.endMs).toBeLessThanOrEqual(durationMs - 1000);
          if (f.kind === 'pause') expect(f.endMs - f.startMs).toBeGreaterThan(1500);
          const activeAtStart = faults.filter((g) => g.startMs <= f.startMs && f.startMs < g.endMs);
          expect(activeAtStart.length).toBeLessThanOrEqual(2);
          const overlapping = faults.filter((g) => g.id !== f.id && g.startMs < f.endMs && f.startMs < g.endMs);
          const mine = new Set(resourcesOf(f, REGIONS));
          for (const g of overlapping) expect(resourcesOf(g, REGIONS).filter((r) => mine.has(r))).toEqual([]);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('parses fault lists with aliases and refuses unknown kinds', () => {
    expect(parseFaultKinds('partition, kill,one-way')).toEqual(['isolate', 'kill', 'oneway']);
    expect(parseFaultKinds('none')).toEqual([]);
    expect(() => parseFaultKinds('isolate,meteor')).toThrow(/meteor/);
  });

  it('has a fixed quick schedule with an isolated region, a kill and a black hole', () => {
    const quick = quickSchedule(REGIONS);
    expect(quick.faults.map((f) => f.kind)).toEqual(['isolate', 'kill', 'blackhole']);
    expect(quick).toEqual(quickSchedule(REGIONS));
  });

  it('draws independent, repeatable streams from one seed', () => {
    const a = new Random(9).fork('x');
    const b = new Random(9).fork('x');
    const c = new Random(9).fork('y');
    const draw = (r: Random) => Array.from({ length: 5 }, () => r.int(0, 1000));
    expect(draw(a)).toEqual(draw(b));
    expect(draw(new Random(9).fork('x'))).not.toEqual(draw(c));
  });
});

describe('workload', () => {
  it('writes documents of its own in each run: a stack that outlives a run holds the earlier runs\' documents', () => {
    const [first, second] = [planDocs(workloadPlan('a1')), planDocs(workloadPlan('a2'))];
    expect(first.length).toBeGreaterThan(0);
    expect(first.filter((doc) => second.includes(doc))).toEqual([]);
  });
});

describe('options', () => {
  it('parses durations and writes a command that repeats the run', () => {
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(() => parseDuration('soon')).toThrow();
    const o = resolveOptions({ seed: 77, duration: '2m', regions: 4, clients: 2, faults: 'kill,pause' });
    expect(reproduceCommand(o)).toBe('node dist/src/cli.js verify --seed 77 --duration 2m --regions 4 --clients 2 --faults kill,pause');
    expect(resolveOptions({ quick: true }).seed).toBe(1);
  });

  it('takes the compose stack as a target, and nothing else', () => {
    expect(resolveOptions({}).target).toBe('local');
    const o = resolveOptions({ seed: 5, duration: '20s', target: 'compose', faults: 'wan,kill' });
    expect(reproduceCommand(o)).toContain('verify --seed 5 --target compose');
    expect(o.faults).toEqual(['wan', 'kill']);
    expect(() => resolveOptions({ target: 'kubernetes' as never })).toThrow(/--target must be local or compose/);
  });
});

describe('response classification', () => {
  it('tells acknowledged, refused and unknown writes apart', () => {
    const cases: [number, string | undefined, Outcome][] = [
      [200, undefined, 'ok'], [400, 'invalid_ops', 'fail'], [429, 'too_many_requests', 'fail'], [404, 'not_found', 'fail'],
      [500, 'internal', 'unknown'], [503, 'unavailable', 'unknown'], [503, 'lagging', 'fail'], [504, 'quorum_timeout', 'ok'],
    ];
    for (const [status, code, outcome] of cases) expect(classifyResponse(status, code)).toBe(outcome);
    expect(outcomeOf({ error: 'ECONNREFUSED' })).toBe('fail');
    expect(outcomeOf({ error: 'timeout' })).toBe('unknown');
    expect(outcomeOf({ error: 'ECONNRESET' })).toBe('unknown');
  });
});

let nextId = 1;
function op(value: OpValue, outcome: Outcome, region = 'us-east'): OpRecord {
  return { id: nextId++, client: `${region}.1`, region, op: value, invokeMs: 0, completeMs: 1, outcome };
}
function finals(docs: Record<string, JsonObject | null>, regions = ['us-east', 'eu-west']): FinalState {
  return new Map(regions.map((r) => [r, new Map(Object.entries(docs))]));
}
const inc = (outcome: Outcome) => op({ kind: 'counter', doc: 'counters/c0', by: 1 }, outcome);
const add = (element: string, outcome: Outcome) => op({ kind: 'set', doc: 'sets/s0', element }, outcome);
const patch = (value: number, outcome: Outcome) => op({ kind: 'patch', doc: 'registers/r0', field: 'us-east_1', value }, outcome);
const token = (t: string, outcome: Outcome) => op({ kind: 'text', doc: 'texts/t0', token: t, index: 0 }, outcome);

describe('history checker', () => {
  it('flags a lost counter increment', () => {
    const result = checkHistory([inc('ok'), inc('ok'), inc('ok'), inc('fail')], finals({ 'counters/c0': { n: 2 } }));
    expect(result.ok).toBe(false);
    expect(result.lost).toBe(1);
    expect(result.violations[0]).toMatchObject({ type: 'lost', workload: 'counter', doc: 'counters/c0' });
  });

  it('accepts a higher count that unknown increments explain, and no more', () => {
    const history = [inc('ok'), inc('ok'), inc('unknown'), inc('unknown'), inc('fail')];
    expect(checkHistory(history, finals({ 'counters/c0': { n: 4 } })).ok).toBe(true);
    expect(checkHistory(history, finals({ 'counters/c0': { n: 2 } })).ok).toBe(true);
    const over = checkHistory(history, finals({ 'counters/c0': { n: 5 } }));
    expect(over).toMatchObject({ ok: false, lost: 0, unexpected: 1 });
  });

  it('flags a lost set add and unexpected elements', () => {
    const history = [add('a', 'ok'), add('b', 'ok'), add('c', 'unknown'), add('d', 'fail')];
    expect(checkHistory(history, finals({ 'sets/s0': { s: ['a', 'b', 'c'] } })).ok).toBe(true);
    expect(checkHistory(history, finals({ 'sets/s0': { s: ['a', 'b'] } })).ok).toBe(true);
    const lost = checkHistory(history, finals({ 'sets/s0': { s: ['a'] } }));
    expect(lost).toMatchObject({ ok: false, lost: 1, unexpected: 0 });
    const phantom = checkHistory(history, finals({ 'sets/s0': { s: ['a', 'b', 'zzz'] } }));
    expect(phantom).toMatchObject({ ok: false, lost: 0, unexpected: 1 });
    const refused = checkHistory(history, finals({ 'sets/s0': { s: ['a', 'b', 'd'] } }));
    expect(refused).toMatchObject({ ok: false, unexpected: 1 });
  });

  it('checks each patched field against its last acknowledged value', () => {
    const history = [patch(1, 'ok'), patch(2, 'unknown'), patch(3, 'ok'), patch(4, 'unknown'), patch(5, 'fail')];
    const stray = checkHistory(history, finals({ 'registers/r0': { 'us-east_1': 3, 'eu-west_9': 1 } }));
    expect(stray).toMatchObject({ ok: false, unexpected: 1 });
    const clean = (n: number) => checkHistory(history, finals({ 'registers/r0': { 'us-east_1': n } }));
    expect(clean(3).ok).toBe(true);
    expect(clean(4).ok).toBe(true);
    // An unknown write may land after a later acknowledged one.
    expect(clean(2).ok).toBe(true);
    expect(clean(1)).toMatchObject({ ok: false, lost: 1 });
    expect(clean(5)).toMatchObject({ ok: false, unexpected: 1 });
    expect(clean(9)).toMatchObject({ ok: false, unexpected: 1 });
    expect(checkHistory(history, finals({ 'registers/r0': {} }))).toMatchObject({ ok: false, lost: 1 });
  });

  it('checks text tokens: present once, never invented, even when split by a concurrent insert', () => {
    const history = [token('a.1', 'ok'), token('b.2', 'ok'), token('c.3', 'unknown'), token('d.4', 'fail')];
    expect(checkHistory(history, finals({ 'texts/t0': { t: '{a.{b.2}1}' } })).ok).toBe(true);
    expect(checkHistory(history, finals({ 'texts/t0': { t: '{c.3}{b.2}{a.1}' } })).ok).toBe(true);
    expect(checkHistory(history, finals({ 'texts/t0': { t: '{a.1}' } }))).toMatchObject({ ok: false, lost: 1 });
    expect(checkHistory(history, finals({ 'texts/t0': { t: '{a.1}{b.2}{b.2}' } }))).toMatchObject({ ok: false, unexpected: 1 });
    expect(checkHistory(history, finals({ 'texts/t0': { t: '{a.1}{b.2}{x.9}' } }))).toMatchObject({ ok: false, unexpected: 1 });
    expect(checkHistory(history, finals({ 'texts/t0': { t: '{a.1}{b.2}{d.4}' } }))).toMatchObject({ ok: false, unexpected: 1 });
    expect(checkHistory(history, finals({ 'texts/t0': { t: '{a.1}x{b.2}' } }))).toMatchObject({ ok: false, unexpected: 1 });
    expect(parseTokens('{a{b}c}{d}')).toEqual({ tokens: ['b', 'ac', 'd'], stray: 0 });
  });

  it('checks every region, so one region missing a write is caught', () => {
    const history = [add('a', 'ok')];
    const state: FinalState = new Map([
      ['us-east', new Map<string, JsonObject | null>([['sets/s0', { s: ['a'] }]])],
      ['eu-west', new Map<string, JsonObject | null>([['sets/s0', null]])],
    ]);
    const result = checkHistory(history, state);
    expect(result).toMatchObject({ ok: false, lost: 1 });
    expect(result.violations.map((x) => x.region)).toEqual(['eu-west']);
  });
});

describe('meridian verify --quick (region processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meridian-verify-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('passes every check and writes the history, results and timeline', async () => {
    const lines: string[] = [];
    const result = await runVerify({ quick: true, seed: 1, report: dir, log: (line) => lines.push(line) });
    const failed = result.checks.filter((c) => !c.ok);
    expect(failed, JSON.stringify({ failed, violations: result.violations.slice(0, 5) }, null, 2)).toEqual([]);
    expect(result.ok).toBe(true);
    expect(result.ops.ok).toBeGreaterThan(100);
    expect(result.faults.ran.map((f) => f.label.split(' ')[0])).toEqual(['isolate', 'kill', 'blackhole']);
    expect(result.timings.timeToConvergeMs).not.toBeNull();
    expect(lines.some((l) => l.includes('isolate'))).toBe(true);

    const history = readFileSync(join(dir, 'history.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string });
    const invoked = history.filter((e) => e.type === 'invoke').length;
    const completed = history.filter((e) => ['ok', 'fail', 'unknown'].includes(e.type)).length;
    expect(invoked).toBe(result.ops.ok + result.ops.fail + result.ops.unknown);
    expect(completed).toBe(invoked);
    const saved = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as { ok: boolean; seed: number };
    expect(saved).toMatchObject({ ok: true, seed: 1 });
    expect(existsSync(join(dir, 'timeline.svg'))).toBe(true);
    expect(readFileSync(join(dir, 'timeline.svg'), 'utf8')).toMatch(/^<svg[^>]*>[\s\S]*isolate[\s\S]*<\/svg>\s*$/);
  }, 60_000);
});
