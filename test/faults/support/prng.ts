// A seeded PRNG (mulberry32): fault moments are entry counts or step numbers drawn from
// it, never wall-clock delays, so a failing run is replayed exactly with FAULT_SEED.

export interface Prng {
  readonly seed: number;
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [min, max]. */
  int(min: number, max: number): number;
  /** `count` distinct integers in [min, max], ascending. */
  distinct(count: number, min: number, max: number): number[];
  pick<T>(items: readonly T[]): T;
}

/** The seed for a scenario: FAULT_SEED when set (a failing run prints it), else `fallback`. */
export function scenarioSeed(fallback: number): number {
  const env = process.env.FAULT_SEED;
  return env ? Number.parseInt(env, 10) >>> 0 : fallback >>> 0;
}

export function prng(seed: number): Prng {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (min: number, max: number): number => min + Math.floor(next() * (max - min + 1));
  return {
    seed,
    next,
    int,
    distinct(count, min, max) {
      if (max - min + 1 < count) throw new Error(`cannot draw ${count} distinct integers from [${min}, ${max}]`);
      const chosen = new Set<number>();
      while (chosen.size < count) chosen.add(int(min, max));
      return [...chosen].sort((a, b) => a - b);
    },
    pick(items) {
      return items[int(0, items.length - 1)]!;
    },
  };
}
