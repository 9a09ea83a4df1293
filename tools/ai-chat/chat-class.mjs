/**
 * A browser-side AI SDK `Chat`: the package's `AbstractChat` with its state in memory and
 * a `subscribe(listener)` for pages without a UI framework (the framework packages ship
 * their own). Used by the vendored bundle (build.mjs) and by the Node tests with each
 * pinned major of `ai`.
 */
export function chatClass(AbstractChat) {
  /** The state AbstractChat writes to; every write tells the listeners. */
  class MemoryChatState {
    #messages;
    #status = "ready";
    #error = undefined;

    constructor(messages, changed) {
      this.#messages = messages;
      this.changed = changed;
    }

    get messages() {
      return this.#messages;
    }

    set messages(messages) {
      this.#messages = messages;
      this.changed();
    }

    get status() {
      return this.#status;
    }

    set status(status) {
      this.#status = status;
      this.changed();
    }

    get error() {
      return this.#error;
    }

    set error(error) {
      this.#error = error;
      this.changed();
    }

    pushMessage(message) {
      this.messages = [...this.#messages, message];
    }

    popMessage() {
      this.messages = this.#messages.slice(0, -1);
    }

    replaceMessage(index, message) {
      this.messages = this.#messages.map((m, i) => (i === index ? message : m));
    }

    snapshot(thing) {
      return structuredClone(thing);
    }
  }

  return class Chat extends AbstractChat {
    constructor({ messages, ...init } = {}) {
      const listeners = new Set();
      const state = new MemoryChatState(messages ?? [], () => {
        for (const listener of [...listeners]) listener(this);
      });
      super({ ...init, state });
      this._listeners = listeners;
    }

    /** Calls `listener(chat)` after every change of messages or status; returns `off()`. */
    subscribe(listener) {
      this._listeners.add(listener);
      return () => this._listeners.delete(listener);
    }
  };
}
