// Input for the batch modes of the tools that wire a pod's network namespace: `ip -batch`,
// `tc -batch` and `iptables-restore`. One process per tool, not one per step: each costs
// 10-15 ms of a pod's start on a busy host, and a pod's wiring was a dozen of them.
import { FailedPreconditionError } from '../lib/errors';

/**
 * Commands for `ip -batch -` or `tc -batch -`, one per line. A word with white space
 * would split a line (interface names cannot have any: the kernel refuses them), so it
 * is refused rather than sent.
 */
export function batchInput(commands: string[][]): string {
  for (const word of commands.flat()) if (word === '' || /\s/.test(word)) throw new FailedPreconditionError(`cannot batch network command word ${JSON.stringify(word)}`);
  return commands.map((c) => `${c.join(' ')}\n`).join('');
}

/**
 * `iptables-restore --noflush` input that appends `rules` (as portForwardRules gives
 * them), table by table. Words are quoted for its parser, which splits at spaces.
 */
export function iptablesRestoreInput(rules: string[][]): string {
  const quote = (word: string): string => {
    if (/["\\\n]/.test(word)) throw new FailedPreconditionError(`cannot pass ${JSON.stringify(word)} to iptables-restore`);
    return /\s/.test(word) || word === '' ? `"${word}"` : word;
  };
  const tables = [...new Set(rules.map(([table]) => table))];
  return tables
    .map((table) => `*${table}\n${rules.filter(([t]) => t === table).map(([, chain, ...rule]) => `-A ${chain} ${rule.map(quote).join(' ')}\n`).join('')}COMMIT\n`)
    .join('');
}
