/**
 * Finds a key written twice in one JSON object. JSON.parse keeps the last one silently, and a peer whose parser
 * keeps the first would then read another message than we do (RFC 8259 §4 leaves the choice open; RFC 7493 I-JSON
 * forbids duplicates). The scan runs only when the decoder's colon count says a key went missing, so it may be
 * simple rather than fast.
 */
import { scanJson } from '../core/json-scan.js';

/** How many times the scanner ran: the tests check that valid messages never need it (a miscount would). */
export let duplicateScans = 0;

/** The path of the first duplicate key (`activate.from`, `report.values.total.p`), or null when there is none. */
export function findDuplicateKey(text: string, root: string): string | null {
  duplicateScans++;
  return scanJson(text, root).duplicate?.path ?? null;
}
