/** A benchmark's knobs: whole numbers from the environment (at least `min`), refused with their name otherwise. */
export function envInt(name: string, fallback: number, min = 1): number {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`${name}: expected an integer >= ${min}, got ${JSON.stringify(v)}`);
  return n;
}
