// Whole-word suggestions from subword pieces: a port of seq2seq_lstm/suggest/suggester.py (a language
// model's Suggester and SuggestSession, without prefetch and adapters). The beam, its stopping rule,
// the float32 rounding of hypothesis scores and the order of ties follow the Python code, so that a
// page shows the words `s2s suggest` prints for the same text.

import { GLUED, WORD, parseTyped } from "./words.js";

export const MAX_CACHED_SEQUENCES = 2048; // piece sequences a session keeps (each holds V log-probs)
export const MAX_CACHED_ANSWERS = 1024; // answers a session keeps
export const CHARS_PER_PIECE = 16; // only the last context * this many characters are read

/**
 * `model`: {step(tokens, h, c, n) -> Promise<{logProbs (N*V), h (L*N*H), c}>, layers, hidden, vocab,
 * bos}; `encode(text) -> ids` is SentencePiece's; `table` a PieceTable of the same vocabulary.
 */
export class Suggester {
  constructor(model, encode, table, { k = 3, beam = 8, context = 64, maxPieces = 8, stopRatio = 1.0 } = {}) {
    Object.assign(this, { model, encode, table, k, beam, context, maxPieces, stopRatio });
    this.startAnswers = new Map(); // answers at the start of a sentence, shared by all sessions
  }

  /** A session for one text being typed (call `await session.start()` first). */
  session() {
    return new SuggestSession(this);
  }
}

const keyOf = (seq) => seq.join(",");

export class SuggestSession {
  constructor(suggester) {
    this.s = suggester;
    this.nodes = new Map(); // key of a piece sequence after BOS -> {logProbs, block, row, mass}
    this.answers = new Map();
    this.anchor = [];
  }

  async start() {
    const { layers, hidden, bos } = this.s.model;
    const zeros = new Float32Array(layers * hidden);
    const block = await this.s.model.step([bos], zeros, zeros, 1);
    this.nodes.set("", this.node(block, 0));
    return this;
  }

  node(block, row) {
    const V = this.s.model.vocab;
    const logProbs = block.logProbs.subarray(row * V, (row + 1) * V);
    return { logProbs, block, row, mass: this.boundaryMass(logProbs) };
  }

  /** log P(the next piece ends the word), rounded to float32 like the torch matrix-vector product. */
  boundaryMass(logProbs) {
    let sum = 0;
    for (const i of this.s.table.boundaryIds) sum += Math.fround(Math.exp(logProbs[i]));
    return Math.fround(Math.log(Math.fround(sum)));
  }

  window(ids) {
    const size = this.s.context;
    if (ids.length <= size) return ids;
    const half = Math.max(1, Math.floor(size / 2));
    const start = (Math.floor((ids.length - size) / half) + 1) * half;
    return ids.slice(start);
  }

  typed(text) {
    const typed = parseTyped(text, this.s.context * CHARS_PER_PIECE, true);
    if (typed === null) return null;
    const ids = typed.context ? this.s.encode(typed.context) : [];
    return [typed, this.window(ids)];
  }

  /** Top-k words for the text typed so far: [{word, prob}], most probable first. */
  async suggest(text, k = this.s.k) {
    const parsed = this.typed(text);
    if (parsed === null || k < 1) return [];
    this.anchor = parsed[1];
    return (await this.answer(parsed[0], parsed[1], k))[0];
  }

  async answer(typed, ids, k) {
    const s = this.s;
    const key = JSON.stringify([ids, typed.partial, typed.join, k, s.beam, s.maxPieces, s.stopRatio]);
    const cache = ids.length === 0 ? s.startAnswers : this.answers;
    let answer = cache.get(key);
    if (answer === undefined) {
      const words = await this.words(ids, typed.partial, typed.join, k, false);
      const ranked = [...words.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      answer = [ranked.slice(0, k).map(([word, prob]) => ({ word, prob })), words];
      if (cache.size >= MAX_CACHED_ANSWERS) cache.delete(cache.keys().next().value);
      cache.set(key, answer);
    }
    return answer;
  }

  async setContext(ids) {
    let done = ids.length;
    while (!this.nodes.has(keyOf(ids.slice(0, done)))) done--;
    for (let n = done + 1; n <= ids.length; n++) await this.expand([ids.slice(0, n)]);
  }

  /** Step the model once on every sequence not stepped yet (their parents are), in one batch. */
  async expand(seqs) {
    const missing = new Map();
    for (const seq of seqs) {
      const key = keyOf(seq);
      if (!this.nodes.has(key) && !missing.has(key)) missing.set(key, seq);
    }
    if (missing.size === 0) return;
    if (this.nodes.size + missing.size > MAX_CACHED_SEQUENCES) this.evict(seqs, [...missing.values()]);
    const { layers, hidden } = this.s.model;
    const n = missing.size;
    const h = new Float32Array(layers * n * hidden);
    const c = new Float32Array(layers * n * hidden);
    const tokens = [];
    let row = 0;
    for (const seq of missing.values()) {
      const parent = this.nodes.get(keyOf(seq.slice(0, -1)));
      const { block } = parent;
      for (let l = 0; l < layers; l++) {
        const from = (l * block.n + parent.row) * hidden;
        h.set(block.h.subarray(from, from + hidden), (l * n + row) * hidden);
        c.set(block.c.subarray(from, from + hidden), (l * n + row) * hidden);
      }
      tokens.push(seq[seq.length - 1]);
      row++;
    }
    const block = await this.s.model.step(tokens, h, c, n);
    [...missing.keys()].forEach((key, r) => this.nodes.set(key, this.node(block, r)));
  }

  /** Make room: keep the last context asked for and what follows it, and what this step needs. */
  evict(seqs, missing) {
    const anchor = keyOf(this.anchor);
    const needed = new Set([...seqs, ...missing.map((seq) => seq.slice(0, -1))].map(keyOf));
    needed.add(anchor).add("");
    const follows = (key) => key === anchor || anchor === "" || key.startsWith(`${anchor},`);
    let kept = [...this.nodes].filter(([key]) => needed.has(key) || follows(key));
    if (kept.length + missing.length > MAX_CACHED_SEQUENCES / 2) kept = kept.filter(([key]) => needed.has(key));
    this.nodes = new Map(kept);
  }

  /** Probabilities of whole words starting with `partial` (equal to it with `exact`): a Map. */
  async words(ids, partial, join, k, exact) {
    const s = this.s;
    const table = s.table;
    const words = new Map();
    const steps = s.maxPieces + Math.max(0, Array.from(partial).length - 4);
    await this.setContext(ids);
    let hyps = [{ seq: ids, text: "", logp: 0, phase: join }];
    for (let depth = 0; depth <= steps; depth++) {
      await this.expand(hyps.map((hyp) => hyp.seq));
      const nodes = hyps.map((hyp) => this.nodes.get(keyOf(hyp.seq)));
      // 1. words that end here: their letters satisfy the typed part, the next piece is a boundary
      hyps.forEach((hyp, i) => {
        const spelled = exact ? hyp.text === partial : hyp.text.length >= partial.length;
        if (hyp.phase === WORD && spelled) add(words, hyp.text, hyp.logp + nodes[i].mass);
      });
      if (depth === steps) break;
      // 2. pieces each hypothesis may take next, words that close inside a piece added on the way
      const cands = this.candidates(hyps, nodes, partial, exact, words);
      cands.sort((a, b) => b[0] - a[0] || b[1] - a[1] || b[2] - a[2]);
      let kept = cands.slice(0, s.beam);
      // 3. drop the hypotheses that cannot bring a new word into the top k
      const probs = [...words.values()].sort((a, b) => b - a);
      const kth = probs.length >= k ? probs[k - 1] : 0;
      if (s.stopRatio * kth > 0) {
        const floor = Math.log(s.stopRatio * kth);
        kept = kept.filter((cand) => cand[0] >= floor);
      }
      if (kept.length === 0) break;
      hyps = kept.map(([t, h, v]) => ({
        seq: [...hyps[h].seq, v],
        text: hyps[h].text + table.leads[v],
        logp: t,
        phase: table.bare[v] ? GLUED : WORD,
      }));
    }
    return words;
  }

  /** [log-prob, hypothesis, piece] of the `beam` best extensions of each group of hypotheses. */
  candidates(hyps, nodes, partial, exact, words) {
    const table = this.s.table;
    const groups = new Map();
    hyps.forEach((hyp, h) => {
      const rest = partial.slice(hyp.text.length);
      const key = `${hyp.phase}\u0000${rest}`;
      if (!groups.has(key)) groups.set(key, { phase: hyp.phase, rest, members: [] });
      groups.get(key).members.push(h);
    });
    const cands = [];
    for (const { phase, rest, members } of groups.values()) {
      const { ids, closeAt } = table.allowedAfter(phase, rest, exact);
      const n = ids.length;
      if (n === 0) continue;
      const lp = new Float64Array(members.length * n); // float32 values, as torch adds them
      members.forEach((h, g) => {
        const row = nodes[h].logProbs;
        const offset = hyps[h].logp;
        for (let j = 0; j < n; j++) lp[g * n + j] = Math.fround(row[ids[j]] + offset);
        for (const j of closeAt) {
          const word = hyps[h].text + table.leads[ids[j]];
          if (!exact || word === partial) add(words, word, lp[g * n + j]);
          lp[g * n + j] = -Infinity; // a piece that ends the word inside itself is a word, never extended
        }
      });
      for (const f of topIndices(lp, this.s.beam)) {
        if (lp[f] > -Infinity) cands.push([lp[f], members[Math.floor(f / n)], ids[f % n]]);
      }
    }
    return cands;
  }
}

function add(words, word, logp) {
  words.set(word, (words.get(word) ?? 0) + Math.exp(logp));
}

/** Indices of the `k` largest values (the first index among equal values first). */
function topIndices(values, k) {
  const top = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (top.length === k && v <= values[top[k - 1]]) continue;
    let at = top.length === k ? k - 1 : top.length;
    while (at > 0 && values[top[at - 1]] < v) at--;
    top.splice(at, 0, i);
    if (top.length > k) top.pop();
  }
  return top;
}
