// The page: loads the exported language model (ONNX Runtime Web, one wasm thread) and its SentencePiece
// model (Google's sentencepiece compiled to wasm), then shows the top words as the user types.
//
// With `?test=TEXTS.json&report=URL` the page types every text of TEXTS.json keystroke by keystroke
// instead (a fresh session per text, as a new text field would get) and POSTs the words shown and the
// time each keystroke took to URL as JSON: how the tests and benchmarks/web_latency.py read it.

import { SentencePieceProcessor } from "./vendor/sentencepiece.js";
import * as ort from "./vendor/ort.wasm.min.mjs";
import { PieceTable } from "./pieces.js";
import { Suggester } from "./suggester.js";
import { splitPartial } from "./words.js";

const $ = (id) => document.getElementById(id);

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

async function loadSuggester() {
  const manifest = await (await fetchOk("manifest.json")).json();
  if (manifest.task !== "lm") throw new Error(`this page needs a language model; the export holds a ${manifest.task} model`);
  const pieces = await (await fetchOk("pieces.json")).json();
  ort.env.wasm.numThreads = 1; // a phone keyboard gets one core; threads would also need cross-origin isolation
  ort.env.wasm.wasmPaths = new URL("./vendor/", import.meta.url).href;
  const graph = await ort.InferenceSession.create(manifest.graphs.lm_step.file, { executionProviders: ["wasm"] });
  const sp = new SentencePieceProcessor();
  // the package's own loaders read files (Node) or base64; the bytes go to its model loader directly
  await sp._loadModel(new Uint8Array(await (await fetchOk(manifest.tokenizer.target)).arrayBuffer()));
  const L = manifest.state.layers;
  const H = manifest.state.hidden_size;
  const model = {
    layers: L,
    hidden: H,
    vocab: manifest.vocab_size.target,
    bos: manifest.special_ids.bos,
    async step(tokens, h, c, n) {
      const out = await graph.run({
        tokens: new ort.Tensor("int64", BigInt64Array.from(tokens, BigInt), [n]),
        h: new ort.Tensor("float32", h, [L, n, H]),
        c: new ort.Tensor("float32", c, [L, n, H]),
      });
      return { logProbs: out.log_probs.data, h: out.h_out.data, c: out.c_out.data, n };
    },
  };
  const table = new PieceTable(pieces.pieces, pieces.special, manifest.special_ids.eos);
  const gen = manifest.generation;
  return new Suggester(model, (text) => sp.encodeIds(text), table, {
    k: gen.suggest_k,
    beam: gen.suggest_beam,
    context: gen.suggest_context,
  });
}

function show(words, onPick) {
  const box = $("suggestions");
  box.replaceChildren(
    ...words.map(({ word }) => {
      const button = document.createElement("button");
      button.textContent = word;
      button.addEventListener("click", () => onPick(word));
      return button;
    }),
  );
}

/** Interactive use: answer the latest text only (a keystroke that arrives while one is worked out wins). */
async function attach(suggester) {
  const field = $("text");
  const session = await suggester.session().start();
  let asked = 0;
  const update = async () => {
    const ticket = ++asked;
    const words = await session.suggest(field.value);
    if (ticket === asked) show(words, pick);
  };
  const pick = (word) => {
    field.value = `${splitPartial(field.value)[0]}${word} `; // the word replaces its typed part
    field.focus();
    update();
  };
  field.addEventListener("input", update);
  field.disabled = false;
  field.focus();
  $("status").textContent = "Suggestions are worked out in this browser; nothing is sent anywhere.";
  await update();
}

async function typeScripted(suggester, textsUrl) {
  const texts = await (await fetchOk(textsUrl)).json();
  const model = suggester.model;
  const step = model.step;
  const spent = { steps: 0, stepMs: 0 }; // model steps of a keystroke, and their time
  model.step = async (...args) => {
    const t0 = performance.now();
    const out = await step(...args);
    spent.steps += 1;
    spent.stepMs += performance.now() - t0;
    return out;
  };
  const results = [];
  for (const text of texts) {
    const session = await suggester.session().start();
    const chars = Array.from(text);
    for (let i = 0; i <= chars.length; i++) {
      const typed = chars.slice(0, i).join("");
      $("text").value = typed;
      Object.assign(spent, { steps: 0, stepMs: 0 });
      const t0 = performance.now();
      const words = await session.suggest(typed);
      show(words, () => {});
      const ms = performance.now() - t0;
      results.push({ text: typed, words: words.map((w) => w.word), probs: words.map((w) => w.prob), ms, ...spent });
    }
  }
  return results;
}

async function main() {
  const params = new URLSearchParams(location.search);
  const report = params.get("report");
  try {
    const t0 = performance.now();
    const suggester = await loadSuggester();
    const loadMs = performance.now() - t0;
    if (params.has("test")) {
      const results = await typeScripted(suggester, params.get("test"));
      await fetch(report, { method: "POST", body: JSON.stringify({ loadMs, results, userAgent: navigator.userAgent }) });
    } else {
      await attach(suggester);
    }
  } catch (error) {
    $("status").textContent = `Error: ${error.message}`;
    if (report) await fetch(report, { method: "POST", body: JSON.stringify({ error: String(error.stack || error) }) });
  }
}

main();
