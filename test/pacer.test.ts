import { describe, expect, it } from 'vitest';
import { BackgroundPacer } from '../src/pacer.js';

describe('catch-up pacer', () => {
  it('never holds catch-up back while no client writes', () => {
    const pacer = new BackgroundPacer(0.25);
    pacer.spent(1000);
    expect(pacer.wait()).toBe(0);
  });

  it('holds catch-up to its share while clients write, and never for longer than one longest wait', async () => {
    const pacer = new BackgroundPacer(0.25);
    pacer.clientWrote();
    expect(pacer.clientsActive()).toBe(true);
    pacer.spent(4);
    expect(pacer.wait()).toBe(0); // within the burst
    pacer.spent(11);
    const wait = pacer.wait();
    // 10 ms overdrawn at a quarter share: about 40 ms to earn it back.
    expect(wait).toBeGreaterThan(30);
    expect(wait).toBeLessThanOrEqual(40);
    pacer.spent(10_000);
    expect(pacer.wait()).toBeGreaterThan(49);
    expect(pacer.wait()).toBeLessThanOrEqual(50);
    // However much was spent, the next turn comes after one longest wait.
    await new Promise((resolve) => setTimeout(resolve, 55));
    expect(pacer.wait()).toBe(0);
  });

  it('lets catch-up run flat out again a second after the last client write', async () => {
    const pacer = new BackgroundPacer(0.25);
    pacer.clientWrote();
    pacer.spent(100);
    expect(pacer.wait()).toBeGreaterThan(0);
    await new Promise((resolve) => setTimeout(resolve, 1050));
    expect(pacer.clientsActive()).toBe(false);
    expect(pacer.wait()).toBe(0);
  });
});
