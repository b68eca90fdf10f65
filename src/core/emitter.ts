/**
 * EventEmitter with typed events, and an emit that never throws into the protocol code: a listener that throws is
 * reported (handler-error event or process warning) instead of breaking the frame being processed.
 */
import { EventEmitter } from 'node:events';

// on, once and off typed by the event map without a method of their own (an override that only calls super would be
// code in every bundle): the interface merges into the class, and the calls reach EventEmitter's methods directly.
export interface TypedEmitter<E extends { [K in keyof E]: unknown[] }> {
  on<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  once<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
  off<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this;
}

// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the interface above only types on, once and off.
export abstract class TypedEmitter<E extends { [K in keyof E]: unknown[] }> extends EventEmitter {
  /** Where a throwing listener is reported. */
  protected abstract listenerFailed(err: unknown, event: string): void;

  /**
   * An error of a user callback: to the 'handler-error' listeners if there are any, else (or if one throws) a
   * process warning of type `warning`. Never silent, never fatal.
   */
  protected reportError(err: unknown, where: string, warning: string): void {
    if (this.listenerCount('handler-error') > 0) {
      try {
        this.emit('handler-error', err, where);
        return;
      } catch (e) {
        err = e;
      }
    }
    process.emitWarning(`${where} threw: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, warning);
  }

  protected emitSafe<K extends keyof E & string>(event: K, ...args: E[K]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      this.listenerFailed(err, event);
    }
  }
}
