/**
 * EventEmitter with typed events, and an emit that never throws into the protocol code: a listener that throws is
 * reported (handler-error event or process warning) instead of breaking the frame being processed.
 */
import { EventEmitter } from 'node:events';

export abstract class TypedEmitter<E extends { [K in keyof E]: unknown[] }> extends EventEmitter {
  override on<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    return super.on(event, listener as (...args: unknown[]) => void);
  }

  override once<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    return super.once(event, listener as (...args: unknown[]) => void);
  }

  override off<K extends keyof E & string>(event: K, listener: (...args: E[K]) => void): this {
    return super.off(event, listener as (...args: unknown[]) => void);
  }

  /** Where a throwing listener is reported. */
  protected abstract listenerFailed(err: unknown, event: string): void;

  protected emitSafe<K extends keyof E & string>(event: K, ...args: E[K]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      this.listenerFailed(err, event);
    }
  }
}
