// The one runtime the custom functions and the task pane share (the manifest's shared runtime):
// where the service is (this page's own origin), the token kept in the add-in's storage, and the
// live cells.

import { Batcher, LiveCells, LithotseClient } from "./lithotse.js";

export const TOKEN_KEY = "lithotse-token";

/** The add-in's storage: OfficeRuntime.storage where Office provides it, else the page's localStorage. */
export function addinStorage(scope = globalThis) {
  if (scope.OfficeRuntime && scope.OfficeRuntime.storage) return scope.OfficeRuntime.storage;
  return {
    getItem: async (key) => scope.localStorage.getItem(key),
    setItem: async (key, value) => scope.localStorage.setItem(key, value),
    removeItem: async (key) => scope.localStorage.removeItem(key),
  };
}

export function createRuntime({ base, storage, fetchImpl, retryMs } = {}) {
  const store = storage || addinStorage();
  const client = new LithotseClient({
    base: base || globalThis.location.origin,
    getToken: () => store.getItem(TOKEN_KEY),
    fetchImpl,
  });
  const batcher = new Batcher(client);
  const live = new LiveCells(client, { batcher, retryMs });
  return {
    client,
    batcher,
    live,
    storage: store,
    async setToken(token) {
      await store.setItem(TOKEN_KEY, token.trim());
      live.refreshAll();
    },
  };
}

let shared = null;

/** The page's runtime, made on first use. */
export function runtime() {
  if (shared === null) shared = createRuntime();
  return shared;
}

/** Tests give the functions a runtime of their own (a server URL, a storage). */
export function useRuntime(value) {
  shared = value;
}
