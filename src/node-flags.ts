/**
 * Node flags for a region process started beside other regions on one
 * machine (`meridian dev`, `meridian sim`, the local clusters of tests and
 * benchmarks). V8 runs parts of each garbage collection on helper threads
 * and waits for them; when the regions outnumber the cores, every region
 * wants a core at once after a heal, the helpers wait for one, and the
 * collections that client writes queue behind stretch to tens of ms. With
 * collection on the region's own thread, they do not wait for a second
 * core (figures: README, "Catching up keeps serving").
 */
import { availableParallelism } from 'node:os';

export function regionNodeFlags(regionsOnMachine: number): string[] {
  return regionsOnMachine >= availableParallelism() ? ['--single-threaded-gc'] : [];
}
