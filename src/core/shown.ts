/**
 * Text of others shown inside our messages, cut short so that a 1 MB string cannot flood a log: one function for
 * every module that quotes what it was given (the codec, the AMQP arguments, the keyring, the configuration, the
 * state files, the devices).
 */

/** `text` itself, or its first `max` characters followed by `...` when it is longer. */
export function cut(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

/** A value shown inside an error message: quoted, and cut short so a 1 MB string cannot flood a log. */
export function shown(value: string, max = 40): string {
  return JSON.stringify(cut(value, max));
}
