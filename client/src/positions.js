/**
 * Where rooms' positions are kept across reloads (`options.storage`): one key per
 * room, so tabs sharing a storage touch only the rooms they write.
 * @module eventide/positions
 */

/**
 * A room's stored position, `{version, epoch?}`, under its own key so that tabs
 * sharing the storage touch only the rooms they write, and merge on each write.
 */
export function positions(storage, prefix) {
  const key = (room) => `${prefix}:${room}`;
  const read = (room) => {
    try {
      const value = JSON.parse(storage?.getItem(key(room)) ?? 'null');
      return typeof value?.version === 'number' ? value : undefined;
    } catch { return undefined; }
  };
  return {
    read,
    /** Read-merge-write: another tab further along the same epoch keeps its position, unless `force`. */
    write(room, version, epoch, force = false) {
      if (!storage || version === undefined) return;
      const theirs = read(room);
      if (!force && theirs && theirs.epoch === epoch && theirs.version >= version) return;
      try { storage.setItem(key(room), JSON.stringify(epoch === undefined ? { version } : { version, epoch })); } catch { /* full: memory only */ }
    },
    remove(room) {
      try { storage?.removeItem?.(key(room)); } catch { /* unavailable */ }
    },
  };
}
