/** @module A small gitignore-style matcher for `.hearthignore` (`#`, `*`, `?`, `**`, `[abc]`, `dir/`, `/anchored`, `!negation`). */

export interface IgnoreRule {
  readonly pattern: string;
  readonly negated: boolean;
  readonly directoryOnly: boolean;
  /** Patterns with a slash match the whole relative path; others match the last segment at any depth. */
  readonly anchored: boolean;
  readonly regex: RegExp;
}

export function parseIgnoreRules(text: string): IgnoreRule[] {
  const rules: IgnoreRule[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const rule = parseIgnoreLine(raw);
    if (rule !== undefined) rules.push(rule);
  }
  return rules;
}

export function parseIgnoreLine(raw: string): IgnoreRule | undefined {
  let line = raw.replace(/(?<!\\)\s+$/, '');
  if (line === '' || line.startsWith('#')) return undefined;
  const negated = line.startsWith('!');
  if (negated) line = line.slice(1);
  const directoryOnly = line.endsWith('/');
  line = line.replace(/\/+$/, '');
  const anchored = line.includes('/');
  line = line.replace(/^\/+/, '');
  if (line === '') return undefined;
  return {
    pattern: raw.trim(),
    negated,
    directoryOnly,
    anchored,
    regex: new RegExp(`^${globToRegex(line)}$`),
  };
}

export interface IgnoreMatcher {
  /** `path` is relative to the function folder with `/` separators, e.g. `src/util.js`. */
  ignores(path: string, isDirectory: boolean): boolean;
}

export function createIgnoreMatcher(rules: readonly IgnoreRule[]): IgnoreMatcher {
  const matches = (path: string, isDirectory: boolean): boolean => {
    const baseName = path.slice(path.lastIndexOf('/') + 1);
    let ignored = false;
    for (const rule of rules) {
      if (rule.directoryOnly && !isDirectory) continue;
      if (rule.regex.test(rule.anchored ? path : baseName)) ignored = !rule.negated;
    }
    return ignored;
  };
  return {
    ignores(path, isDirectory) {
      // As in git, nothing inside an ignored folder comes back, whatever later rules say.
      const segments = path.split('/');
      for (let depth = 1; depth < segments.length; depth++) {
        if (matches(segments.slice(0, depth).join('/'), true)) return true;
      }
      return matches(path, isDirectory);
    },
  };
}

function globToRegex(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const char = glob.charAt(i);
    if (char === '*' && glob.charAt(i + 1) === '*') {
      const wholeSegment =
        (i === 0 || glob.charAt(i - 1) === '/') && (i + 2 === glob.length || glob.charAt(i + 2) === '/');
      if (wholeSegment && glob.charAt(i + 2) === '/') {
        out += '(?:.*/)?';
        i += 2;
      } else {
        out += wholeSegment ? '.*' : '[^/]*';
        i += 1;
      }
    } else if (char === '*') out += '[^/]*';
    else if (char === '?') out += '[^/]';
    else if (char === '[' && glob.indexOf(']', i + 2) > i) {
      const close = glob.indexOf(']', i + 2);
      const body = glob
        .slice(i + 1, close)
        .replace(/^!/, '^')
        .replace(/\\/g, '\\\\');
      out += `[${body}]`;
      i = close;
    } else if (char === '\\' && i + 1 < glob.length) {
      out += escapeRegex(glob.charAt(i + 1));
      i += 1;
    } else out += escapeRegex(char);
  }
  return out;
}

function escapeRegex(char: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(char) ? `\\${char}` : char;
}
