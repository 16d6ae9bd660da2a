import { describe, expect, it } from 'vitest';
import { formatStatus, parseSimCommand, SIM_HELP, type RegionStatusRow } from '../src/faults/sim-commands.js';

const regions = ['ap-south', 'eu-west', 'us-east'];

describe('simulator commands', () => {
  it('parses region, link and process commands', () => {
    expect(parseSimCommand('partition us-east', regions)).toEqual({ kind: 'partition', region: 'us-east' });
    expect(parseSimCommand('cut us-east eu-west', regions)).toEqual({ kind: 'fault', fault: { kind: 'down' }, a: 'us-east', b: 'eu-west' });
    expect(parseSimCommand('kill eu-west', regions)).toEqual({ kind: 'process', action: 'kill', region: 'eu-west' });
    expect(parseSimCommand('wipe eu-west', regions)).toEqual({ kind: 'process', action: 'wipe', region: 'eu-west' });
    expect(parseSimCommand('heal', regions)).toEqual({ kind: 'heal' });
    expect(parseSimCommand('status', regions)).toEqual({ kind: 'status' });
  });

  it('takes fault arguments before optional link regions', () => {
    const all = parseSimCommand('latency 80ms ±20ms', regions);
    expect(all).toMatchObject({ kind: 'fault', fault: { kind: 'latency', ms: 80, jitterMs: 20 } });
    expect(all).not.toHaveProperty('a');
    const one = parseSimCommand('blackhole us-east eu-west', regions);
    expect(one).toMatchObject({ kind: 'fault', fault: { kind: 'blackhole' }, a: 'us-east', b: 'eu-west' });
    expect(parseSimCommand('stall ap-south', regions)).toMatchObject({ kind: 'fault', fault: { kind: 'stall' }, a: 'ap-south' });
  });

  it('refuses unknown commands and regions with a hint', () => {
    expect(() => parseSimCommand('explode', regions)).toThrow(/unknown command 'explode'; type 'help'/);
    expect(() => parseSimCommand('kill mars', regions)).toThrow(/unknown region 'mars'/);
    expect(() => parseSimCommand('kill', regions)).toThrow(/needs a region/);
    expect(() => parseSimCommand('latency fast', regions)).toThrow();
  });

  it('says that cut needs two different regions', () => {
    expect(() => parseSimCommand('cut us-east', regions)).toThrow(/'cut' needs two different regions: cut A B/);
    expect(() => parseSimCommand('cut us-east us-east', regions)).toThrow(/'cut' needs two different regions/);
    expect(() => parseSimCommand('cut', regions)).toThrow(/'cut' needs two different regions/);
  });

  it('gives the same slicer syntax in its help and in its usage errors, and accepts what the help shows', () => {
    const helpLine = SIM_HELP.split('\n').find((l) => l.trim().startsWith('slicer'));
    expect(helpLine).toContain('slicer BYTES [DELAY] [DIR] [A [B]]');
    let message = '';
    try {
      parseSimCommand('slicer lots us-east', regions);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('usage: slicer BYTES [DELAY] [DIR] [A [B]]');
    expect(parseSimCommand('slicer 16 5ms upstream us-east eu-west', regions)).toMatchObject({
      kind: 'fault', fault: { kind: 'slicer', maxBytes: 16, delayMs: 5, direction: 'upstream' }, a: 'us-east', b: 'eu-west',
    });
  });

  it('keeps the status columns aligned when a region is paused or stopped', () => {
    const peer = { state: 'up', route: 'direct', outboundPending: 0, outboundLagMs: 0, inboundPending: 0 };
    const rows: RegionStatusRow[] = [
      { region: 'ap-south', url: '', process: 'running', reachable: true, digest: 'abcdefabcdef00', pendingDocs: 0,
        peers: [{ region: 'eu-west', ...peer, state: 'down', route: 'via us-east' }, { region: 'us-east', ...peer }] },
      { region: 'eu-west', url: '', process: 'paused', reachable: false, digest: null, pendingDocs: 0, peers: [] },
      { region: 'us-east', url: '', process: 'stopped', reachable: false, digest: null, pendingDocs: 0, peers: [] },
    ];
    const lines = formatStatus({ rows, converged: false }).split('\n').slice(0, -1);
    const header = lines[0]!;
    const cellAt = (line: string, column: string) => line.slice(header.indexOf(column)).split(/ {2,}/)[0];
    const paused = lines.find((l) => l.startsWith('eu-west'))!;
    const stopped = lines.find((l) => l.startsWith('us-east'))!;
    expect([cellAt(paused, 'process'), cellAt(paused, 'link'), cellAt(paused, 'digest')]).toEqual(['paused', 'no answer', '-']);
    expect([cellAt(stopped, 'process'), cellAt(stopped, 'link'), cellAt(stopped, 'digest')]).toEqual(['stopped', 'no answer', '-']);
    expect(cellAt(lines[1]!, 'route')).toBe('via us-east');
    expect(cellAt(lines[1]!, 'digest')).toBe('abcdefabcdef');
    expect(lines.find((l) => l.startsWith('eu-west'))).toMatch(/paused +- +no answer/);
  });
});
