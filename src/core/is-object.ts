/** An object that is not null nor an array: what a JSON message, a configuration section or a state record must be. */
export const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
