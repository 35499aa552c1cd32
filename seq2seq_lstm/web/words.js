// What counts as a word, and how a half-typed word is parsed: a port of seq2seq_lstm/suggest/words.py.
//
// Python counts code points and its str.isspace / unicodedata categories decide; the same rules are
// written here with Unicode property escapes, and texts are handled as arrays of code points so that
// lengths and slices mean what they mean in Python.

export const APOSTROPHES = new Set(["'", "\u2019"]);
export const MAX_WORD_CHARS = 48;

// Python's str.isspace(): Unicode White_Space plus the information separators \x1c-\x1f
const SPACE_CLASS = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const IS_SPACE = new RegExp(`^[${SPACE_CLASS}]$`, "u");
const NOT_WORD = /^[\p{P}\p{S}\p{C}\p{Z}]$/u;
const DROPPED = /^[\p{Cc}\p{Cf}\p{Cs}]$/u;
const SENTENCE_END = new RegExp(`[.!?]+["')\\]\\u2019\\u201d]*[${SPACE_CLASS}]+|\\n`, "gu");
const SPACE_RUN = new RegExp(`[${SPACE_CLASS}]+`, "u");
const FIRST_SPACE = new RegExp(`[${SPACE_CLASS}]`, "u");

export const SPACE = "space";
export const GLUED = "glued";
export const EITHER = "either";
export const WORD = "word";

export function isSpace(ch) {
  return IS_SPACE.test(ch);
}

/** Whether `ch` (one code point) belongs to a word; apostrophes only inside one (`first` false). */
export function isWordChar(ch, first = false) {
  if (APOSTROPHES.has(ch)) return !first;
  return !isSpace(ch) && !NOT_WORD.test(ch);
}

/** Control and format characters carry no words; whitespace controls stay (they separate). */
export function cleanWord(text) {
  return Array.from(text)
    .filter((ch) => isSpace(ch) || !DROPPED.test(ch))
    .join("");
}

/** Python's " ".join(text.split()). */
function squeeze(text) {
  return text.split(SPACE_RUN).filter((part) => part !== "").join(" ");
}

/**
 * Split the text typed so far into {context, partial, join} (Python's parse_typed); null when the
 * word being typed is longer than MAX_WORD_CHARS.
 */
export function parseTyped(text, maxChars, sentenceScope = true) {
  const all = Array.from(text);
  const wasCut = all.length > maxChars;
  const chars = Array.from(cleanWord(all.slice(-maxChars).join("")));
  let end = chars.length;
  while (end > 0 && isWordChar(chars[end - 1])) {
    end -= 1;
    if (chars.length - end > MAX_WORD_CHARS) return null;
  }
  while (end < chars.length && APOSTROPHES.has(chars[end])) end += 1;
  let context = chars.slice(0, end).join("");
  const partial = chars.slice(end).join("");
  if (wasCut) {
    const m = FIRST_SPACE.exec(context);
    context = m ? context.slice(m.index + m[0].length) : "";
  }
  if (sentenceScope) {
    let last = -1;
    for (const m of context.matchAll(SENTENCE_END)) last = m.index + m[0].length;
    if (last >= 0) context = context.slice(last);
  }
  if (squeeze(context) === "") return { context: "", partial, join: SPACE };
  const lastChar = Array.from(context).pop();
  if (isSpace(lastChar)) return { context: squeeze(context), partial, join: SPACE };
  return { context: squeeze(context), partial, join: partial ? GLUED : EITHER };
}

/** [the text before the word being typed, the typed part of that word], by parseTyped's rule. */
export function splitPartial(text) {
  const chars = Array.from(text);
  let end = chars.length;
  while (end > 0 && isWordChar(chars[end - 1])) end -= 1;
  while (end < chars.length && APOSTROPHES.has(chars[end])) end += 1;
  return [chars.slice(0, end).join(""), chars.slice(end).join("")];
}
