// Per-piece facts, computed once per vocabulary: a port of seq2seq_lstm/suggest/pieces.py.

import { APOSTROPHES, EITHER, GLUED, SPACE, WORD, isWordChar } from "./words.js";

const WORD_BOUNDARY = "\u2581";
const MAX_CACHED_KEYS = 4096;

/**
 * What every piece means for word building (see PieceTable in pieces.py). `pieces` are the
 * SentencePiece model's pieces in id order; `special` the ids of control, unknown and byte pieces,
 * which never build a word (only `eos` among them is a boundary).
 */
export class PieceTable {
  constructor(pieces, special, eos) {
    const V = pieces.length;
    const skip = new Set(special);
    this.leads = new Array(V).fill("");
    this.boundary = new Uint8Array(V);
    this.bare = new Uint8Array(V);
    this.close = new Uint8Array(V);
    const flags = { space: new Uint8Array(V), cont: new Uint8Array(V), glued: new Uint8Array(V) };
    this.byPrefix = new Map(); // every prefix of a lead -> pieces with that lead prefix
    this.byLead = new Map(); // exact lead -> pieces
    for (let i = 0; i < V; i++) {
      if (skip.has(i)) {
        this.boundary[i] = i === eos ? 1 : 0;
        continue;
      }
      const piece = pieces[i];
      const starts = piece.startsWith(WORD_BOUNDARY);
      const body = Array.from(starts ? piece.slice(1) : piece);
      let n = 0;
      while (n < body.length && isWordChar(body[n], starts && n === 0)) n++;
      const leadChars = body.slice(0, n);
      const lead = leadChars.join("");
      this.leads[i] = lead;
      this.boundary[i] = starts || !lead ? 1 : 0;
      flags.space[i] = starts && lead ? 1 : 0;
      this.bare[i] = starts && body.length === 0 ? 1 : 0;
      flags.cont[i] = !starts && lead ? 1 : 0;
      flags.glued[i] = !starts && lead && !APOSTROPHES.has(body[0]) ? 1 : 0;
      this.close[i] = lead && n < body.length ? 1 : 0;
      if (lead) {
        push(this.byLead, lead, i);
        for (let j = 1; j <= n; j++) push(this.byPrefix, leadChars.slice(0, j).join(""), i);
      }
    }
    this.boundaryIds = Int32Array.from(indices(this.boundary));
    const or = (...masks) => masks[0].map((_, i) => (masks.some((m) => m[i]) ? 1 : 0));
    this.allowed = {
      [SPACE]: or(flags.space, this.bare),
      [GLUED]: flags.glued,
      [EITHER]: or(flags.space, this.bare, flags.glued),
      [WORD]: flags.cont,
    };
    this.bareIds = indices(this.bare);
    this.cache = new Map();
  }

  /**
   * The pieces that may come next in `phase` with `rest` still to be typed: {ids, closeAt}, where
   * closeAt are the positions in ids of pieces that end the word inside themselves.
   */
  allowedAfter(phase, rest, exact) {
    const key = `${phase}\u0000${rest}\u0000${exact}`;
    let allowed = this.cache.get(key);
    if (allowed !== undefined) return allowed;
    if (this.cache.size > MAX_CACHED_KEYS) this.cache.clear();
    const ok = this.allowed[phase];
    let ids;
    if (!rest) {
      ids = exact ? [] : indices(ok);
    } else {
      const chars = Array.from(rest);
      const finish = (exact ? this.byLead.get(rest) : this.byPrefix.get(rest)) ?? [];
      const chosen = new Set(finish.filter((i) => ok[i]));
      const partial = [...this.bareIds];
      for (let j = 1; j < chars.length; j++) partial.push(...(this.byLead.get(chars.slice(0, j).join("")) ?? []));
      for (const i of partial) if (ok[i] && !this.close[i]) chosen.add(i);
      ids = [...chosen].sort((a, b) => a - b);
    }
    const closeAt = [];
    ids.forEach((i, n) => {
      if (this.close[i]) closeAt.push(n);
    });
    allowed = { ids: Int32Array.from(ids), closeAt };
    this.cache.set(key, allowed);
    return allowed;
  }
}

function push(map, key, value) {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

function indices(mask) {
  const out = [];
  mask.forEach((on, i) => {
    if (on) out.push(i);
  });
  return out;
}
