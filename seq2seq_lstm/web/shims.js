// The SentencePiece package imports Node's "fs" and "buffer" for its Node-only loaders; the page maps
// both names here (index.html's import map) and loads the model from bytes it fetched itself.
export const Buffer = undefined;
export function readFileSync() {
  throw new Error("no file system in a browser");
}
