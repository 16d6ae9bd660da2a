import { describe, expect, it } from 'vitest';
import { parseSimCommand } from '../src/faults/sim-commands.js';

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
});
