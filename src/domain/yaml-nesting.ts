/**
 * @module A cheap look at YAML text before a parser sees it. The `yaml` library's time grows exponentially
 * with nested flow collections used as keys (`{{{…}}}`: 200 levels took 0.1 s, 400 took 6.5 s, 843 took
 * 157 s), and a manifest is caller input (issue 19), so nesting is bounded before parsing, in one pass.
 */

/** Resources nest about 6 levels deep; JSON API bodies are held to the same bound. */
export const MAX_YAML_NESTING = 64;

/**
 * The first place where flow collections (`[`, `{`) nest deeper than `limit`, as a sentence naming the line,
 * or undefined. Quoted scalars and comments are skipped. A quote counts only where a scalar can start, so an
 * apostrophe inside a plain word (`don't`) is not taken for one; a misread can only under-count, and the
 * parser's own limits (the worker's time bound on the server) still apply.
 */
export function yamlNestingProblem(text: string, limit = MAX_YAML_NESTING): string | undefined {
  let depth = 0;
  let line = 1;
  let previous = '\n';
  for (let index = 0; index < text.length; index += 1) {
    const char = text[index];
    if (char === '\n') line += 1;
    else if (char === '#' && (previous === ' ' || previous === '\t' || previous === '\n')) {
      const end = text.indexOf('\n', index);
      if (end === -1) return undefined;
      index = end - 1;
    } else if ((char === '"' || char === "'") && startsScalar(previous)) {
      const end = closingQuote(text, index, char);
      if (end === -1) return undefined;
      for (let at = index + 1; at < end; at += 1) if (text[at] === '\n') line += 1;
      index = end;
    } else if (char === '[' || char === '{') {
      depth += 1;
      if (depth > limit)
        return `collections nested deeper than ${limit} levels (line ${line}); a resource needs a few`;
    } else if ((char === ']' || char === '}') && depth > 0) depth -= 1;
    previous = text[index] ?? '';
  }
  return undefined;
}

function startsScalar(previous: string): boolean {
  return ' \t\n[{,:-?'.includes(previous);
}

/** Index of the quote that ends a quoted scalar opened at `start`, or -1 if it never ends. */
function closingQuote(text: string, start: number, quote: string): number {
  for (let index = start + 1; index < text.length; index += 1) {
    const char = text[index];
    if (quote === '"' && char === '\\') index += 1;
    else if (char === quote) {
      // '' is an escaped quote inside a single-quoted scalar.
      if (quote === "'" && text[index + 1] === "'") index += 1;
      else return index;
    }
  }
  return -1;
}
